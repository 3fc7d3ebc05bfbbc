import * as fs from 'node:fs';
import type { Command } from 'commander';
import { errno } from '@p2p/errno';
import { action, type Context } from '../context';
import { toChromeTrace } from '../trace/chrome-trace';
import { parseDuration } from '../trace/duration';
import { streamServiceEvents } from '../trace/event-sources';
import { ReorderWindow } from '../trace/reorder-window';
import { eventJson, eventLine, type ServiceEvent } from '../trace/service-event';

/** How long a watch holds an event for a slower stream's earlier ones (the services' transit skew). */
export const REORDER_WINDOW_MS = 50;

interface Recording {
  /** The services whose stream failed. */
  readonly failed: string[];
}

/**
 * Streams every service's events until `stopAfterMs` passes or SIGINT, in
 * wall-clock order within the reorder window, to `onEvent`.
 */
async function record(context: Context, nvme: boolean, stopAfterMs: number | undefined, onEvent: (event: ServiceEvent) => void): Promise<Recording> {
  const stderr = context.invocation.stderr;
  const stop = new AbortController();
  const interrupt = (): void => stop.abort();
  process.once('SIGINT', interrupt);
  const timer = stopAfterMs === undefined ? undefined : setTimeout(interrupt, stopAfterMs);
  const window = new ReorderWindow(BigInt(REORDER_WINDOW_MS) * 1_000_000n, onEvent);
  const ticker = setInterval(() => window.tick(BigInt(Date.now()) * 1_000_000n), REORDER_WINDOW_MS / 2);
  try {
    const failed = await streamServiceEvents(context.clients, {
      nvme,
      signal: stop.signal,
      onEvent: (event) => window.push(event),
      onLive: (service) => stderr.write(`p2p: watching ${service}\n`),
      onError: (service, error) => stderr.write(`p2p: ${service}: ${error instanceof Error ? error.message : String(error)}\n`),
    });
    return { failed };
  } finally {
    process.removeListener('SIGINT', interrupt);
    if (timer !== undefined) clearTimeout(timer);
    clearInterval(ticker);
    window.drain();
  }
}

function allFailed(recording: Recording): void {
  if (recording.failed.length === 2) throw errno('ECONNREFUSED', `no service's events could be watched (${recording.failed.join(', ')})`);
}

/** `p2p watch` and `p2p trace`: every service's events, live or as a Perfetto timeline. */
export function watchCommands(program: Command): void {
  program
    .command('watch')
    .description("every service's events as they happen (pci-emu's, the registry's), merged in wall-clock order, until Ctrl-C; --json: one object per line")
    .option('--nvme', "pci-emu's NVMe controller events too (commands, doorbells, queues)")
    .action(
      action<{ nvme?: boolean }>(async (context, _args, options) => {
        const { stdout } = context.invocation;
        const recording = await record(context, options.nvme === true, undefined, (event) =>
          stdout.write(`${context.json ? JSON.stringify(eventJson(event)) : eventLine(event)}\n`),
        );
        allFailed(recording);
      }),
    );

  program
    .command('trace')
    .description("record every service's events for a while (or until Ctrl-C) as a Chrome trace-event file: open it in ui.perfetto.dev or chrome://tracing")
    .requiredOption('-o, --out <file>', 'the trace file to write (JSON)')
    .option('-d, --duration <time>', 'stop after this long: 500ms, 10s, 2m (default: at Ctrl-C)')
    .option('--nvme', "pci-emu's NVMe controller events too")
    .action(
      action<{ out: string; duration?: string; nvme?: boolean }>(async (context, _args, options) => {
        const duration = options.duration === undefined ? undefined : parseDuration(options.duration);
        const events: ServiceEvent[] = [];
        const recording = await record(context, options.nvme === true, duration, (event) => events.push(event));
        allFailed(recording);
        const trace = toChromeTrace(events);
        fs.writeFileSync(options.out, `${JSON.stringify(trace)}\n`);
        context.print({ out: options.out, events: events.length, traceEvents: trace.traceEvents.length }, () => `${options.out}: ${events.length} events, ${trace.traceEvents.length} trace events`);
      }),
    );
}
