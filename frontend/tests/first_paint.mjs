// Prints, as one JSON line, how long the Attributions tab takes to draw its evolution heatmap: from the
// tab's render() call, and from navigation. Used by bench/bench_frontend.py.
//   node tests/first_paint.mjs <tensorboard url> [hash suffix, e.g. '&rows=0' to draw every feature]
import { launch, openTab } from './browser.mjs';

const browser = await launch();
try {
  const frame = await openTab(browser.page, process.argv[2], process.argv[3] ?? '');
  await frame.waitForSelector('#evolution[data-drawn]', { timeout: 60000 });
  const render = Number(await frame.getAttribute('main.tb-xai', 'data-first-paint-ms'));
  const paintedAt = Number(await frame.getAttribute('main.tb-xai', 'data-first-paint-at'));
  const navigation = paintedAt - (await browser.page.evaluate(() => performance.timeOrigin));
  process.stdout.write(`${JSON.stringify({ render_to_heatmap_ms: render, navigation_to_heatmap_ms: navigation, navigation_to_render_ms: navigation - render })}\n`);
} finally {
  await browser.close();
}
