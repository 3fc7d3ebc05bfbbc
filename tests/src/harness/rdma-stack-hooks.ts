import { RdmaStack } from './rdma-hosts';

/**
 * One RdmaStack for a mocha suite: started before its first test, stopped
 * after its last. Call it in the suite's body; the getter gives the stack.
 */
export function useRdmaStack(options?: Parameters<typeof RdmaStack.start>[0]): () => RdmaStack {
  let stack: RdmaStack | undefined;
  before(async () => {
    stack = await RdmaStack.start(options);
  });
  after(async () => {
    await stack?.stop();
  });
  return () => {
    if (stack === undefined) throw new Error('the RdmaStack is not started: use it inside a test');
    return stack;
  };
}
