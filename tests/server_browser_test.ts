/**
 * The playground in a real browser: playwright-core drives Debian's chromium
 * (/usr/bin/chromium, installed by .ci/run) against the app on a loopback port, types a
 * prompt, and sees the step previews and the final image appear, with no console errors
 * (a CSP violation would be one).
 *
 * WEBDIT_PLAYGROUND_SCREENSHOT=FILE.png saves a screenshot of the finished page (the
 * README's); WEBDIT_PLAYGROUND_MODEL, _PROMPT, _STEPS and _TIMEOUT_S choose what it shows.
 */
import { chromium } from "playwright-core";
import { assert, assertEquals } from "./assert.ts";
import { withRuntime } from "./gpu.ts";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import { createApp } from "../runtime/server/app.ts";
import { loadDenseEntry, ModelCatalog } from "../runtime/server/models.ts";
import { PIXEL_MODEL, pixelPrompts } from "./server_helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const NATURAL_WIDTH = "document.getElementById('result').naturalWidth";
const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
// In CI a missing browser is a failure (.ci/run installs it); elsewhere the test is skipped.
const ignore = !hasChromium && !Deno.env.get("CI");

Deno.test({
  name: "server browser: the playground shows step previews and the image",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const env = (k: string) => Deno.env.get(`WEBDIT_PLAYGROUND_${k}`);
    const modelPath = env("MODEL") ?? PIXEL_MODEL;
    const prompt = env("PROMPT") ?? (await pixelPrompts())[0];
    const steps = Number(env("STEPS") ?? 6);
    const shot = env("SCREENSHOT");
    await withRuntime(async (rt) => {
      const entry = await loadDenseEntry(rt, { path: modelPath });
      const s = createApp({
        runtime: rt,
        catalog: new ModelCatalog([entry]),
        registry: createDefaultRegistry(),
        log: () => {},
      });
      const ac = new AbortController();
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
        s.app.fetch,
      );
      const url = `http://127.0.0.1:${server.addr.port}/`;
      const profile = await Deno.makeTempDir({ prefix: "webdit-chromium-" });
      const ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1000, height: 720 },
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      try {
        const page = ctx.pages()[0] ?? await ctx.newPage();
        const problems: string[] = [];
        page.on("console", (m) => {
          if (m.type() === "error") problems.push(`console: ${m.text()}`);
        });
        page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
        await page.goto(url);
        // The model list comes from /v1/models.
        // Browser-side code as strings (this project's type check has no DOM lib), run by
        // evaluate (not waitForFunction, whose polling evaluates code the page's CSP forbids).
        await page.waitForSelector("#model option", { state: "attached" });
        assert(
          (await page.textContent("#adapter"))?.includes(rt.info.description.split(" ")[0]),
          "adapter shown",
        );
        // Count the distinct previews as they arrive.
        await page.evaluate(`(() => {
          window.previews = new Set();
          const img = document.getElementById("preview");
          new MutationObserver(() => window.previews.add(img.src)).observe(img, { attributes: true });
        })()`);
        await page.fill("#prompt", prompt);
        await page.fill("#steps", String(steps));
        await page.fill("#seed", "3");
        await page.click("#generate");
        await page.waitForSelector("#result:not([hidden])", {
          timeout: Number(env("TIMEOUT_S") ?? 120) * 1000,
        });
        for (let i = 0; !(await page.evaluate<number>(NATURAL_WIDTH)); i++) {
          if (i > 200) throw new Error("the image never loaded");
          await new Promise((r) => setTimeout(r, 25));
        }
        const previews = await page.evaluate<number>("window.previews.size");
        assert(previews >= 2, `saw ${previews} previews of ${steps - 1}`);
        const px = entry.pipeline.transformer.config.sampleSize;
        assertEquals(
          await page.evaluate<number>(NATURAL_WIDTH),
          px,
        );
        assertEquals(await page.textContent("#status"), "done");
        const timings = await page.textContent("#timings");
        assert(timings?.includes("mean step") && timings.includes("seed"), `timings: ${timings}`);
        assertEquals(problems, [], "no console errors");
        if (shot) await page.screenshot({ path: shot, fullPage: true });
      } finally {
        await ctx.close();
        await Deno.remove(profile, { recursive: true }).catch(() => {});
        ac.abort();
        await server.finished;
        s.close();
        entry.pipeline.release();
      }
    });
  },
});
