// Loads tidegate's status page in headless Chromium, waits until its charts show data from a
// running proxy, checks the figures, and saves a screenshot.
//   node status_page.mjs URL SCREENSHOT.png
// Needs playwright-core installed under $TIDEGATE_BROWSER_TOOLS (its node_modules) and Chromium
// ($CHROMIUM, default /usr/bin/chromium). `cargo xtask test` sets both up.
import { createRequire } from "node:module";

const tools = process.env.TIDEGATE_BROWSER_TOOLS;
if (!tools) {
  console.error("TIDEGATE_BROWSER_TOOLS is not set: run through `cargo xtask test`");
  process.exit(2);
}
const { chromium } = createRequire(`${tools}/`)("playwright-core");

const [url, out] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: node status_page.mjs URL SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  // The charts have data once at least five samples are drawn and connections are live.
  await page.waitForFunction(() => Number(document.body.dataset.samples || 0) >= 5
      && Number((document.getElementById("k-live").textContent || "0").replace(/\D/g, "")) > 0,
    null, { timeout: 30000 });
  // The cluster view: the peer edge listed as up, and its connections in the cluster figure.
  await page.waitForFunction(() => document.querySelectorAll("#peers td.up").length >= 1
      && Number((document.getElementById("k-cluster").textContent || "0").replace(/\D/g, ""))
         > Number((document.getElementById("k-live").textContent || "0").replace(/\D/g, "")),
    null, { timeout: 30000 });
  const figures = await page.evaluate(() => ({
    live: document.getElementById("k-live").textContent,
    cluster: document.getElementById("k-cluster").textContent,
    peers: document.getElementById("k-peers").textContent,
    desired: document.getElementById("k-desired").textContent,
    backends: document.querySelectorAll("#backends .be").length,
    decision: document.getElementById("last-decision").textContent,
  }));
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  if (figures.backends < 1 || figures.desired === "–" || !figures.decision || figures.peers === "–") {
    throw new Error(`status page incomplete: ${JSON.stringify(figures)}`);
  }
  await page.screenshot({ path: out, fullPage: true });
  console.log(JSON.stringify(figures));
} finally {
  await browser.close();
}
