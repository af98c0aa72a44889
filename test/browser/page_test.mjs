// The incnn-serve page in a real browser (Debian's chromium, driven by
// playwright-core): load the sample long document, type into it (ASCII and
// non-ASCII, insertions and deletions, faster than the server answers), and
// check that the prediction shown, and the document's output through the
// API, equal `incnn-run --text` on the final text bit for bit. With a token
// classifier (a tagger) the page underlines its flags from the spans each
// edit changed; the underlines on the final text must equal the spans of
// `incnn-run --text` (its labels and token_bytes, docs/serve.md's rule).
//
//   node page_test.mjs BIN_DIR PROGRAM.incnn SAMPLE.txt SCREENSHOT.png
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const [binDir, program, sample, screenshot] = process.argv.slice(2);
let server = null;
// Stops the server too: it would otherwise outlive the test and hold ctest's pipe.
const fail = (msg) => { console.log("FAIL " + msg); server?.kill(); process.exit(1); };

server = spawn(path.join(binDir, "incnn-serve"),
                     [program, "--port", "0", "--sample", sample],
                     { stdio: ["ignore", "pipe", "inherit"] });
const base = await new Promise((resolve, reject) => {
  server.stdout.once("data", (d) => {
    const m = /http:\/\/([^/]+)\//.exec(String(d));
    m ? resolve("http://" + m[1]) : reject(new Error("no address: " + d));
  });
  server.once("exit", (c) => reject(new Error("incnn-serve exited " + c)));
});

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  const model = await (await fetch(base + "/v1/model")).json();
  const tagger = model.task === "token_classifier";
  await page.goto(base + "/");
  await page.waitForFunction(() => window.incnn && window.incnn.docId() !== null);
  await page.click("#sample");
  await page.waitForFunction(() => /tokens, from scratch/.test(
      document.getElementById("status").textContent) && window.incnn.text().length > 1000,
      null, { timeout: 120000 });
  const tokens = await page.textContent("#tokens");
  console.log(`loaded the sample: ${tokens} tokens`);

  // Put the caret in the middle, type, delete, and type non-ASCII text.
  const idle = () => page.waitForFunction(() => window.incnn.idle(), null, { timeout: 60000 });
  const caret = async (at) => page.evaluate((at) => {
    const e = document.getElementById("editor");
    e.focus();
    e.setSelectionRange(at, at);
  }, at);
  const length = (await page.evaluate(() => window.incnn.text().length));
  await caret(3);
  await page.keyboard.press("Enter");
  await page.keyboard.type("Abstract: ", { delay: 0 });
  await caret(Math.floor(length / 4));
  await page.keyboard.press("Shift+ArrowRight");
  await page.keyboard.press("Shift+ArrowRight");
  await page.keyboard.press("Delete");
  await page.keyboard.type("\u20ac5 ", { delay: 20 });
  await caret(Math.floor(length / 2));
  await page.keyboard.type(" incremental networks reuse work", { delay: 0 });
  for (let i = 0; i < 6; i++) await page.keyboard.press("Backspace");
  await page.keyboard.type(" caf\u00e9 \u00fcber \u4e2d\u6587 \u{1F600} na\u00efve", { delay: 0 });
  await idle();
  await page.keyboard.type(" x", { delay: 30 });
  await idle();
  if (tagger) {
    // Errors people make, typed at the top and in the middle, one fixed again.
    await caret(0);
    await page.keyboard.type("Teh proposal wil recieve thier review untill tommorow. ",
                             { delay: 10 });
    await caret(Math.floor(length / 3));
    await page.keyboard.type(" becuase the the parser is diffrent ", { delay: 10 });
    await idle();
    for (let i = 0; i < 3; i++) await page.keyboard.press("Backspace");
    await page.keyboard.type("rent ", { delay: 10 });
    await idle();
  }
  // The server loses the document (as when a fleet's server dies): the page
  // sends its text again and carries on.
  const lost = await page.evaluate(() => window.incnn.docId());
  await fetch(`${base}/v1/documents/${lost}`, { method: "DELETE" });
  await page.keyboard.type(" again", { delay: 30 });
  await idle();
  const resent = await (await fetch(`${base}/v1/documents/${lost}`)).json();
  if (resent.text_bytes !== Buffer.byteLength(await page.evaluate(() => window.incnn.text())))
    fail(`after the server lost the document the page did not send it again: ${JSON.stringify(resent)}`);
  console.log("the server lost the document: the page sent its text again and went on");

  const text = await page.evaluate(() => window.incnn.text());
  const id = await page.evaluate(() => window.incnn.docId());
  const shown = (await page.textContent("#prediction")).trim();
  const doc = await (await fetch(`${base}/v1/documents/${id}`)).json();
  const dir = mkdtempSync(path.join(tmpdir(), "incnn-page-"));
  writeFileSync(path.join(dir, "final.txt"), text);
  const run = JSON.parse(execFileSync(path.join(binDir, "incnn-run"),
      [program, "--text", path.join(dir, "final.txt"), "--json"]).toString().split("\n")[0]);
  const bits = (xs) => Array.from(new Float32Array(xs.flat())).join(",");
  if (bits(doc.output) !== bits(run.output))
    fail(`the page's document ${bits(doc.output)} differs from incnn-run --text ${bits(run.output)}`);
  if (doc.text_bytes !== Buffer.byteLength(text, "utf8"))
    fail(`the server holds ${doc.text_bytes} bytes, the page ${Buffer.byteLength(text, "utf8")}`);
  if (tagger) {
    // The spans of incnn-run's labels (docs/serve.md): words (a token starting
    // with whitespace and the tokens up to the next one) holding a token not
    // labelled labels[0], with the first such label.
    const bytes = Buffer.from(text, "utf8"), space = (b) => " \n\t\r".includes(String.fromCharCode(b));
    const want = [];
    for (let i = 0; i < run.labels.length; ) {
      let j = i + 1;
      while (j < run.labels.length && !(run.token_bytes[j][0] < run.token_bytes[j][1] &&
                                        space(bytes[run.token_bytes[j][0]]))) j++;
      const label = run.labels.slice(i, j).find((l) => l !== model.labels[0]);
      let b = run.token_bytes[i][0];
      const e = run.token_bytes[j - 1][1];
      while (b < e && space(bytes[b])) b++;
      if (label && b < e) want.push([b, e, label]);
      i = j;
    }
    const flags = await page.evaluate(() => window.incnn.flags());
    if (JSON.stringify(flags) !== JSON.stringify(want))
      fail(`the page underlines ${JSON.stringify(flags)}, incnn-run --text gives ${JSON.stringify(want)}`);
    const underlined = await page.evaluate(() => window.incnn.underlined());
    const words = want.map(([b, e, l]) => [bytes.subarray(b, e).toString("utf8"), l]);
    if (JSON.stringify(underlined) !== JSON.stringify(words))
      fail(`the page draws ${JSON.stringify(underlined)}, expected ${JSON.stringify(words)}`);
    console.log(`the page underlines ${flags.length} spans, equal to incnn-run --text on the ` +
                `final text: ${words.slice(0, 8).map((w) => w[0]).join(", ")}...`);
  } else if (shown !== doc.prediction || shown !== run.label)
    fail(`the page shows '${shown}', the server '${doc.prediction}', incnn-run '${run.label}'`);
  const rtt = await page.textContent("#rtt");
  // The bar of where the last update went: three parts a layer, then the rest.
  const parts = await page.$$eval("#parts span", (spans) => spans.map((x) => x.title));
  const layerCount = run.stats.dirty_rows.length;
  if (parts.length !== 3 * layerCount + 1 || !parts[0].startsWith("layer 0: delta terms: "))
    fail(`the update's bar shows ${JSON.stringify(parts)}`);
  console.log(`typed ASCII and non-ASCII text, deleted, replaced: the page shows '${shown}', ` +
              `its document equals incnn-run --text bit for bit (last round trip ${rtt})`);
  if (tagger) {
    // The picture for the README: the top, where the typos were typed.
    await page.evaluate(() => {
      const e = document.getElementById("editor");
      e.scrollTop = 0;
      e.dispatchEvent(new Event("scroll"));
    });
  }
  await page.screenshot({ path: screenshot });
  console.log("browser test: ok");
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  server.kill();
}
