// Opens TensorBoard's Images tab in headless Chromium, shows the images at their own size, and saves a
// screenshot. Run by tools/tensorboard_screenshot.py (which trains the run and starts TensorBoard):
//   node tools/tensorboard_screenshot.cjs URL OUTPUT.png   (NODE_PATH: where playwright-core is installed)
const { chromium } = require("playwright-core");

(async () => {
  const [url, output] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Root in a sandbox-less container, no GPU, and a closed network (Chromium's background
    // connections would otherwise be refused, many at a time).
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1080 } });
    await page.goto(`${url}#images`);
    await page.getByText("Show actual image size").click();
    // Both pictures loaded (Playwright's selectors reach into TensorBoard's shadow DOM).
    await page.waitForFunction(() => {
      const images = [];
      const visit = (root) => root.querySelectorAll("*").forEach((element) => {
        if (element.tagName === "IMG") images.push(element);
        if (element.shadowRoot) visit(element.shadowRoot);
      });
      visit(document);
      return images.length >= 2 && images.every((image) => image.complete && image.naturalWidth > 0);
    }, null, { timeout: 60000 });
    await page.waitForTimeout(500); // the cards' layout settles after the images load
    await page.screenshot({ path: output, fullPage: true });
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
