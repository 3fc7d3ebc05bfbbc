export { tempShmDir, useTempShmDir } from './temp-shm-dir';
export { eventually, rejection } from './eventually';
export { isServing, freePort, serviceMain, startServiceProcess, type ServiceProcess, type ServiceProcessOptions } from '@p2p/service-process';
export { platformSecretsOf, asAdmin, asPlatform, asToken, type ClientArgs } from './credentials';
