/** @p2p/service-process: the model's services as child processes (the tests' stacks, the chaos campaigns' local driver). */
export { isServing } from './health';
export { freePort, serviceMain, startServiceProcess, type ServiceProcess, type ServiceProcessOptions } from './service-process';
