// Opens https:// and then wss:// through tidegate in headless Chromium and checks the echo.
//   node wss.mjs ORIGIN LEAF_CERT.pem
// Chromium trusts exactly the proxy's test certificate: its public key's SHA-256 goes to
// --ignore-certificate-errors-spki-list, so any other certificate still fails. Needs
// playwright-core under $TIDEGATE_BROWSER_TOOLS and Chromium ($CHROMIUM, default
// /usr/bin/chromium); `cargo xtask test` sets both up.
import { createRequire } from "node:module";
import { X509Certificate, createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const tools = process.env.TIDEGATE_BROWSER_TOOLS;
if (!tools) {
  console.error("TIDEGATE_BROWSER_TOOLS is not set: run through `cargo xtask test`");
  process.exit(2);
}
const { chromium } = createRequire(`${tools}/`)("playwright-core");
const [origin, certFile] = process.argv.slice(2);
if (!origin || !certFile) {
  console.error("usage: node wss.mjs https://localhost:PORT LEAF_CERT.pem");
  process.exit(2);
}
const spki = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: "spki", format: "der" });
const pin = createHash("sha256").update(spki).digest("base64");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         `--ignore-certificate-errors-spki-list=${pin}`],
});
try {
  const page = await browser.newPage();
  const response = await page.goto(`${origin}/healthz`);
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${origin}/healthz: ${response && response.status()}`);
  }
  const wsUrl = origin.replace(/^https:/, "wss:") + "/chat";
  const result = await page.evaluate((url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error("no echo within 15 s")), 15000);
    ws.onopen = () => ws.send("hello from chromium over wss");
    ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    ws.onmessage = (m) => { clearTimeout(timer); ws.close(1000); resolve({ echo: m.data, url: ws.url }); };
  }), wsUrl);
  if (result.echo !== "hello from chromium over wss") {
    throw new Error(`unexpected echo: ${JSON.stringify(result)}`);
  }
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
