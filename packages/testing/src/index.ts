export { tempShmDir, useTempShmDir } from './temp-shm-dir';
export { eventually, rejection } from './eventually';
export { isServing } from './health';
export { freePort, serviceMain, startServiceProcess, type ServiceProcess, type ServiceProcessOptions } from './service-process';
export { platformSecretsOf, asAdmin, asPlatform, asToken, type ClientArgs } from './credentials';
