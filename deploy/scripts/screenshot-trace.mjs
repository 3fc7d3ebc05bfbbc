// Screenshots a Chrome trace-event file (`p2p trace --out run.json`) as
// Chromium's built-in trace viewer shows it: DevTools' Performance panel,
// "Load trace…", every process and thread track expanded, the whole trace
// in view and one slice selected so its arguments show below. This is how
// docs/trace-example.png was made from docs/trace-example.json.
//
// A developer's tool, not part of the build or the tests: it needs a
// Chromium (Debian: apt-get install chromium) and puppeteer-core, which it
// loads from the directory it is run in, not from this repository:
//
//   mkdir -p /tmp/shot && cd /tmp/shot && npm install puppeteer-core
//   node /path/to/repo/deploy/scripts/screenshot-trace.mjs \
//     /path/to/repo/docs/trace-example.json /path/to/repo/docs/trace-example.png
//
// Environment: CHROMIUM (default /usr/bin/chromium), SELECT (the name of the
// slice to select, default "revoke"). chrome://tracing's own viewer (catapult)
// is no longer shipped in current Chromium; DevTools' Performance panel is.
// It draws the complete ("X") slices per thread; it does not draw the async
// lifetimes ("b"/"e") or the flow arrows that ui.perfetto.dev shows.
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [traceFile, outFile] = process.argv.slice(2);
if (!traceFile || !outFile) {
  console.error("usage: node screenshot-trace.mjs TRACE.json OUT.png");
  process.exit(2);
}
const require = createRequire(path.join(process.cwd(), "noop.js"));
const puppeteer = require("puppeteer-core");
const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium";
const select = process.env.SELECT ?? "revoke";
const W = 1400;
const H = 660;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Where the trace's slices fall on the flame chart: DevTools puts the
// trace's first event at 0 and fits the whole trace to the chart's width.
const trace = JSON.parse(fs.readFileSync(traceFile, "utf8"));
const events = Array.isArray(trace) ? trace : trace.traceEvents;
const timed = events.filter((e) => typeof e.ts === "number");
const t0 = Math.min(...timed.map((e) => e.ts));
const t1 = Math.max(...timed.map((e) => e.ts + (e.dur ?? 0)));
const target = timed.find((e) => e.ph === "X" && e.name.startsWith(select));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "devtools-profile-"));
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  userDataDir: profile,
  args: ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: W, height: H });
  await page.goto("devtools://devtools/bundled/devtools_app.html?panel=timeline", { waitUntil: "load" });
  await sleep(3000);

  // DevTools' UI is web components: look through every shadow root.
  const button = (label) =>
    page.evaluateHandle((src) => {
      const re = new RegExp(src, "i");
      const walk = (root) => {
        for (const el of root.querySelectorAll("*")) {
          const l = el.getAttribute("aria-label") ?? el.getAttribute("title") ?? "";
          if (el.tagName === "BUTTON" && re.test(l) && el.getBoundingClientRect().width > 0) return el;
          if (el.shadowRoot) {
            const found = walk(el.shadowRoot);
            if (found) return found;
          }
        }
        return null;
      };
      return walk(document);
    }, label);
  const click = async (label) => {
    const el = (await button(label)).asElement();
    if (el) {
      await el.click();
      await sleep(600);
    }
    return el !== null;
  };

  const [chooser] = await Promise.all([page.waitForFileChooser({ timeout: 10000 }), click("^load trace")]);
  await chooser.accept([path.resolve(traceFile)]);
  await sleep(5000);
  await click("^close$"); // the keyboard-shortcuts card shown on a first load
  await click("^hide sidebar");
  await page.mouse.click(W / 2, 70, { clickCount: 2 }); // the whole trace in view

  // Expand the track groups. Rows are drawn on a canvas with no DOM to
  // query, so click where DevTools puts the headers: collapsed processes
  // 19 px apart from 129 px; once expanded, a process's first thread header
  // 17 px below it and each further header 21 px on. Bottom up, so the rows
  // above keep their places.
  const meta = (name) => events.filter((e) => e.ph === "M" && e.name === name);
  const sortIndex = (pid) => meta("process_sort_index").find((e) => e.pid === pid)?.args.sort_index ?? pid;
  const pids = [...new Set(meta("process_name").map((e) => e.pid))].sort((a, b) => sortIndex(a) - sortIndex(b));
  const processRows = pids.map((_, i) => 129 + i * 19);
  const threadRows = [];
  let y = 129;
  for (const pid of pids) {
    y += 17;
    for (let n = meta("thread_name").filter((e) => e.pid === pid).length; n > 0; n--) {
      threadRows.push(y);
      y += 21;
    }
  }
  for (const row of processRows.reverse()) await page.mouse.click(40, row + 1);
  await sleep(300);
  for (const row of threadRows.reverse()) await page.mouse.click(80, row + 1);

  // Select the slice so that its arguments show in the Summary below: try
  // each lane at the slice's middle until the Summary names it.
  if (target) {
    const x = ((target.ts - t0 + (target.dur ?? 0) / 2) / (t1 - t0)) * W;
    const summary = () =>
      page.evaluate(() => {
        const walk = (root) =>
          [...root.querySelectorAll("*")].map((el) => (el.shadowRoot ? walk(el.shadowRoot) : "")).join("") +
          (root.textContent ?? "");
        return walk(document) + document.body.innerText;
      });
    let found = false;
    for (let lane = 140; lane < H - 200 && !found; lane += 6) {
      await page.mouse.click(x, lane);
      await sleep(300);
      const text = await summary();
      found = text.includes("eventKey") && text.includes(target.name);
    }
    if (!found) console.error(`screenshot-trace: could not select "${target.name}"`);
  }
  await page.mouse.move(W - 100, H / 2 + 40); // no hover tooltip in the picture
  await sleep(500);
  await page.screenshot({ path: outFile });
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
