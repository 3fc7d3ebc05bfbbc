import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Command } from 'commander';
import Table from 'cli-table3';
import { parse } from 'shell-quote';
import { errno } from '@p2p/errno';
import { action, type Context } from '../context';
import { runCli } from '../run';
import { ModelProcess } from '../session/model-process';
import { askSession } from '../session/session-client';
import { checkSessionName, DEFAULT_SESSION, logPath, sessionDir, socketPath } from '../session/session-paths';
import type { SessionInfo } from '../session/session-protocol';
import { resolveTarget } from '../target';

/** How long `session start` waits for the daemon to serve. */
const START_TIMEOUT_MS = 20_000;

/** Starts a session daemon and resolves once it serves. */
function startDaemon(name: string, target: string | undefined, tokenFile: string | undefined): Promise<SessionInfo> {
  const log = fs.openSync(logPath(name), 'a', 0o600);
  const daemon = spawn(process.execPath, [path.join(__dirname, '../session/daemon-main.js'), name, target ?? '', tokenFile ?? ''], {
    detached: true,
    stdio: ['ignore', 'pipe', log],
  });
  fs.closeSync(log);
  const { stdout } = daemon;
  if (stdout === null) throw new Error('spawn gave the daemon no stdout pipe');
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      daemon.kill('SIGKILL');
      reject(errno('ETIMEDOUT', `session ${name} did not start within ${START_TIMEOUT_MS / 1000} s (see ${logPath(name)})`));
    }, START_TIMEOUT_MS);
    stdout.setEncoding('utf8');
    stdout.on('data', (chunk: string) => {
      output += chunk;
      if (!output.includes('\n')) return;
      clearTimeout(timer);
      stdout.destroy();
      daemon.unref();
      try {
        resolve((JSON.parse(output.slice(0, output.indexOf('\n'))) as { ready: SessionInfo }).ready);
      } catch {
        reject(errno('EIO', `session ${name} said ${JSON.stringify(output)}`));
      }
    });
    daemon.once('exit', (code) => {
      clearTimeout(timer);
      const tail = fs.readFileSync(logPath(name), 'utf8').trim().split('\n').slice(-3).join('\n');
      reject(errno('EIO', `session ${name} exited (status ${code}) before serving: ${tail}`));
    });
  });
}

/** The info of a live session, or undefined when its socket is stale (the socket is then removed). */
async function probe(name: string): Promise<SessionInfo | undefined> {
  try {
    const response = await askSession(socketPath(name), name, { info: true }, 5_000);
    return 'info' in response ? response.info : undefined;
  } catch {
    fs.rmSync(socketPath(name), { force: true });
    return undefined;
  }
}

/** Runs command lines typed at a prompt in a model process of this command's own; history kept in ~/.p2p_history. */
async function shell(context: Context, name: string): Promise<void> {
  const target = resolveTarget(context.global);
  const process_ = await ModelProcess.open(target, `p2p-shell-${name}`);
  const historyFile = process.env.P2P_HISTORY || path.join(os.homedir(), '.p2p_history');
  const history = fs.existsSync(historyFile) ? fs.readFileSync(historyFile, 'utf8').split('\n').filter((l) => l !== '').reverse().slice(0, 1000) : [];
  const prompt = readline.createInterface({ input: process.stdin, output: process.stdout, history, historySize: 1000, terminal: process.stdin.isTTY });
  prompt.setPrompt(`p2p(pid ${process_.pid})> `);
  context.invocation.stdout.write(`process ${process_.name}, pid ${process_.pid}: type a p2p command without "p2p" (help lists them), exit or Ctrl-D to end\n`);
  prompt.prompt();
  try {
    for await (const line of prompt) {
      const words = parse(line).filter((word): word is string => typeof word === 'string');
      if (words[0] === 'exit' || words[0] === 'quit') break;
      if (words.length > 0) {
        fs.appendFileSync(historyFile, `${line}\n`, { mode: 0o600 });
        await runCli({ argv: ['node', 'p2p', ...(words[0] === 'p2p' ? words.slice(1) : words)], stdout: context.invocation.stdout, stderr: context.invocation.stderr, process: process_ });
      }
      prompt.prompt();
    }
  } finally {
    prompt.close();
    await process_.close();
    context.invocation.stdout.write(`process ${process_.pid} exited: its fds are closed\n`);
  }
}

/**
 * `p2p session`: a model process whose fds persist across commands, in the
 * background (start, stop, list) or as an interactive shell.
 */
export function sessionCommands(program: Command): void {
  const session = program
    .command('session')
    .description('a process of the model whose fds persist across commands: in the background (start/stop/list; process commands go to it), or a shell');

  session
    .command('start')
    .description('start a background session: a model process that keeps its fds until stopped')
    .argument('[name]', 'the session name', DEFAULT_SESSION)
    .action(
      action(async (context, [name]) => {
        const sessionName = checkSessionName(name!);
        if ((await probe(sessionName)) !== undefined) throw errno('EEXIST', `session ${sessionName} is running: \`p2p session stop${sessionName === DEFAULT_SESSION ? '' : ` ${sessionName}`}\` first`);
        const info = await startDaemon(sessionName, context.global.target, context.global.tokenFile);
        context.print(info, () => `session ${info.name}: process pid ${info.pid} (daemon ${info.daemonPid}); its log is ${logPath(info.name)}`);
      }),
    );

  session
    .command('stop')
    .description("stop a background session: its process exits and the registry closes its fds")
    .argument('[name]', 'the session name', DEFAULT_SESSION)
    .action(
      action(async (context, [name]) => {
        const sessionName = checkSessionName(name!);
        const response = await askSession(socketPath(sessionName), sessionName, { stop: true });
        if (!('stopped' in response)) throw errno('EIO', `session ${sessionName} did not stop: ${JSON.stringify(response)}`);
        context.print({ name: sessionName, stopped: true }, () => `session ${sessionName} stopped`);
      }),
    );

  session
    .command('list')
    .description('the running sessions')
    .action(
      action(async (context) => {
        const names = fs.readdirSync(sessionDir()).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -'.sock'.length));
        const live = (await Promise.all(names.map(probe))).filter((info): info is SessionInfo => info !== undefined);
        context.print(live, () => {
          if (live.length === 0) return 'no sessions';
          const table = new Table({ head: ['session', 'pid', 'daemon', 'started'], style: { head: [], border: [] } });
          table.push(...live.map((s) => [s.name, String(s.pid), String(s.daemonPid), s.startedAt]));
          return table.toString();
        });
      }),
    );

  session
    .command('shell')
    .description('an interactive shell acting as a new model process: its fds live until you exit; history in ~/.p2p_history')
    .argument('[name]', 'a name for the process', 'shell')
    .action(action(async (context, [name]) => shell(context, checkSessionName(name!))));
}
