// Drives the Attributions tab of a real TensorBoard in Chromium and reports what works, as one JSON line:
//   {"checks": {"<name>": {"ok": bool, "detail": ...}}, "first_paint_ms": ..., "screenshots": [...]}
// Every check runs even when an earlier one fails, so one report says everything. tests/test_frontend.py
// starts TensorBoard over logdirs written by the callback and asserts each check.
//
//   node tests/dashboard.mjs '<json config>'
// config: {url, screenshots, downloads, runs: {tabular, image, xss, onestep}, tabular_features: [...], xss_name,
//          grow: a command that logs one more step to the xss run,
//          failing: {url of a second TensorBoard whose only run has failures, run, heal: a command that logs
//                    its first attribution}}

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { launch, openTab, tabFrame } from './browser.mjs';

const config = JSON.parse(process.argv[2]);
const checks = {};
const screenshots = [];
const pageErrors = [];
const dialogs = [];

async function check(name, body) {
  const start = performance.now();
  try {
    const detail = await body();
    checks[name] = { ok: true, detail: detail ?? null };
  } catch (error) {
    checks[name] = { ok: false, detail: String(error?.stack ?? error) };
  }
  checks[name].ms = Math.round(performance.now() - start);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Distinct colours and a hash of a canvas's pixels (to tell blank from drawn, and one drawing from another). */
function canvasStats(frame, selector) {
  return frame.$eval(selector, (canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const colours = new Set();
    let hash = 0;
    for (let i = 0; i < data.length; i += 4) {
      const c = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      colours.add(c);
      hash = (hash * 31 + c + data[i + 3]) | 0;
    }
    return { colours: colours.size, hash, width: canvas.width, height: canvas.height };
  });
}

const drawn = (frame, card, prefix) => frame.waitForSelector(`#${card}[data-drawn^="${prefix}"]:not([aria-busy])`, { timeout: 20000 });
// Every card done loading (the later cards load after the evolution card's data): what their statuses then say
// is an answer, not a request still on its way.
const settled = (frame) => frame.waitForFunction(() => !document.querySelector('.card[aria-busy]')
  && ![...document.querySelectorAll('.card .status')].some((s) => s.textContent.startsWith('Loading')), null, { timeout: 20000 });

async function selectRun(frame, run) {
  await frame.selectOption('select[name=run]', run);
  for (const card of ['evolution', 'topk', 'probe', 'stability', 'agreement']) await drawn(frame, card, `${run}|`);
}

async function shoot(frame, card, name) {
  const file = path.join(config.screenshots, `${name}.png`);
  // The sticky selection bar would cover the top of a card scrolled into view.
  await frame.$eval('nav.controls', (nav) => { nav.style.position = 'static'; });
  await frame.locator(`#${card}`).screenshot({ path: file });
  await frame.$eval('nav.controls', (nav) => { nav.style.position = ''; });
  screenshots.push(file);
}

async function download(page, frame, card, format) {
  await settled(frame); // a card still loading has no table or figure to export yet
  let file;
  try {
    [file] = await Promise.all([page.waitForEvent('download'), frame.click(`#${card} button[data-export=${format}]`)]);
  } catch (error) {
    const status = await frame.$eval(`#${card} .status`, (s) => s.textContent).catch(() => '');
    throw new Error(`${card} ${format}: no download (${error.message.split('\n')[0]}); the card's status: "${status}"`);
  }
  const target = path.join(config.downloads, file.suggestedFilename());
  await file.saveAs(target);
  return target;
}

const browser = await launch({ width: 1280, height: 1700 });
const { page } = browser;
page.on('pageerror', (error) => pageErrors.push(error.message));
page.on('dialog', async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.dismiss();
});
const { tabular, image, xss } = config.runs;
let frame;

try {
  await check('tab_appears', async () => {
    await page.goto(config.url);
    const tab = page.getByText('Attributions', { exact: true }).first();
    await tab.waitFor({ timeout: 30000 });
    await tab.click();
    frame = await tabFrame(page);
    return page.url();
  });
  frame ??= await openTab(page, config.url);

  await check('tabular_views_draw', async () => {
    await selectRun(frame, tabular);
    // The first method by name (the tab keeps the method of the run it opened on).
    const firstMethod = (await frame.$$eval('select[name=method] option', (o) => o.map((x) => x.value))).sort()[0];
    await frame.selectOption('select[name=method]', firstMethod);
    for (const card of ['evolution', 'topk', 'probe', 'stability', 'agreement']) await drawn(frame, card, `${tabular}|`);
    await frame.waitForSelector(`#evolution[data-drawn^="${tabular}|${firstMethod}|"]:not([aria-busy])`);
    await frame.waitForSelector(`#probe[data-drawn*="|${firstMethod}|"]:not([aria-busy])`);
    const heatmap = await canvasStats(frame, '#evolution canvas.cells');
    assert(heatmap.colours > 20, `evolution heatmap looks blank: ${JSON.stringify(heatmap)}`);
    const rows = await frame.$$eval('#evolution .row-labels text', (texts) => texts.map((t) => t.querySelector('title').textContent));
    assert(rows.length === Math.min(30, config.tabular_features.length), `expected ${config.tabular_features.length} rows, got ${rows.length}`);
    assert(rows.every((r) => config.tabular_features.includes(r)), `unexpected row names ${rows}`);
    const lines = await frame.$$eval('#topk g.series path', (paths) => paths.filter((p) => (p.getAttribute('d') ?? '').length > 20).length);
    assert(lines >= 6, `top-k card drew ${lines} lines, expected 5 features + the training curve`);
    const legend = await frame.$$eval('#topk .legend text', (texts) => texts.map((t) => t.textContent));
    assert(legend.some((t) => t.includes('epoch_loss')), `no Keras training curve in the legend: ${legend}`);
    const bars = await frame.$$eval('#probe svg.bars rect', (rects) => rects.length);
    assert(bars > 0, 'probe explorer drew no bars');
    const probeHeatmap = await canvasStats(frame, '#probe canvas.cells');
    assert(probeHeatmap.colours > 10, 'probe heatmap looks blank');
    const predictions = await frame.$$eval('#probe .lines g.series path', (paths) => paths.length);
    assert(predictions >= 2, `prediction trajectory has ${predictions} lines`);
    const stability = await frame.$$eval('#stability g.series path', (paths) => paths.filter((p) => (p.getAttribute('d') ?? '').length > 20).length);
    assert(stability >= 2, `stability drew ${stability} lines`);
    const note = await frame.textContent('#stability .note');
    assert(/settled/i.test(note), `stability summary: ${note}`);
    await shoot(frame, 'evolution', 'evolution_heatmap');
    await shoot(frame, 'topk', 'topk_lines');
    await shoot(frame, 'stability', 'stability');
    return { heatmap, rows: rows.length, lines, bars, first_paint_ms: Number(await frame.getAttribute('main.tb-xai', 'data-first-paint-ms')) };
  });

  await check('hover_shows_value', async () => {
    await frame.locator('#evolution canvas.cells').hover();
    const tip = frame.locator('#evolution .tooltip');
    await tip.waitFor({ state: 'visible', timeout: 5000 });
    const text = await tip.textContent();
    assert(/feature: .+step: \d+.*attribution\|?: [-\d.e]+/.test(text), `tooltip: ${text}`);
    await page.mouse.move(0, 0);
    return text;
  });

  await check('keyboard_reads_cells', async () => {
    const tip = frame.locator('#evolution .tooltip');
    await tip.waitFor({ state: 'hidden', timeout: 5000 }); // the hover's tooltip is gone: what shows next is the keyboard's
    // The cursor is the orange cell outline over the heatmap.
    const cursor = () => frame.$eval('#evolution', (card) => {
      const rect = card.querySelector('rect[stroke="#f57c00"]');
      return rect ? { x: Number(rect.getAttribute('x')), y: Number(rect.getAttribute('y')) } : null;
    });
    await frame.focus('#evolution canvas.cells');
    await page.keyboard.press('ArrowDown');
    await tip.waitFor({ state: 'visible', timeout: 5000 });
    const first = { text: await tip.textContent(), at: await cursor() };
    await page.keyboard.press('ArrowDown');
    const second = { text: await tip.textContent(), at: await cursor() };
    assert(await tip.isVisible(), 'the tooltip hid after an arrow key');
    assert(first.text.startsWith('feature: ') && second.text.startsWith('feature: '), `tooltip after arrow keys: ${first.text} / ${second.text}`);
    assert(first.at && second.at && second.at.y > first.at.y && second.at.x === first.at.x, `cursor did not move down: ${JSON.stringify([first.at, second.at])}`);
    assert(first.text !== second.text, `the tooltip still reads the first cell: ${second.text}`);
    await frame.locator('select[name=run]').focus();
    return { first, second };
  });

  await check('method_change_updates', async () => {
    const before = await canvasStats(frame, '#evolution canvas.cells');
    const methods = await frame.$$eval('select[name=method] option', (options) => options.map((o) => o.value));
    const current = await frame.inputValue('select[name=method]');
    // integrated_gradients where logged: its maps do not vanish once the model saturates (nicer screenshots).
    const other = methods.find((m) => m !== current && m === 'integrated_gradients') ?? methods.find((m) => m !== current);
    assert(other, `only one method: ${methods}`);
    await frame.selectOption('select[name=method]', other);
    await drawn(frame, 'evolution', `${tabular}|${other}|`);
    await drawn(frame, 'stability', `${tabular}|${other}|`);
    const after = await canvasStats(frame, '#evolution canvas.cells');
    assert(after.hash !== before.hash, 'heatmap pixels did not change with the method');
    return { from: current, to: other };
  });

  await check('probe_change_updates', async () => {
    const before = await frame.getAttribute('#probe', 'data-drawn');
    const pixels = await canvasStats(frame, '#probe canvas.cells');
    await frame.selectOption('select[name=probe]', '3');
    await drawn(frame, 'probe', `${tabular}|3|`);
    const after = await canvasStats(frame, '#probe canvas.cells');
    assert(after.hash !== pixels.hash, `the probe's attribution heatmap did not change (${before})`);
    const note = await frame.textContent('#probe .note');
    assert(note.startsWith('Probe 3'), `probe summary: ${note}`);
    await shoot(frame, 'probe', 'probe_tabular');
    return { before, after: await frame.getAttribute('#probe', 'data-drawn') };
  });

  await check('url_remembers_selection', async () => {
    const wanted = {
      run: await frame.inputValue('select[name=run]'),
      method: await frame.inputValue('select[name=method]'),
      probe: await frame.inputValue('select[name=probe]'),
    };
    // The page's URL carries the selection (localStorage, the fallback, is cleared so it cannot stand in).
    const hash = new URL(page.url()).hash;
    for (const [key, value] of Object.entries(wanted)) {
      assert(hash.includes(`&${key}=${encodeURIComponent(value)}`), `the URL lacks ${key}=${value}: ${page.url()}`);
    }
    await frame.evaluate(() => localStorage.clear());
    await page.reload();
    frame = await tabFrame(page);
    await drawn(frame, 'probe', `${wanted.run}|${wanted.probe}|${wanted.method}`);
    const got = {
      run: await frame.inputValue('select[name=run]'),
      method: await frame.inputValue('select[name=method]'),
      probe: await frame.inputValue('select[name=probe]'),
    };
    assert(JSON.stringify(got) === JSON.stringify(wanted), `after reload ${JSON.stringify(got)}, expected ${JSON.stringify(wanted)}`);
    return { url: page.url(), ...got };
  });

  await check('export_png_svg_csv', async () => {
    const files = {};
    for (const format of ['PNG', 'SVG', 'CSV']) files[format] = await download(page, frame, 'evolution', format);
    const png = fs.readFileSync(files.PNG);
    assert(png.subarray(1, 4).toString() === 'PNG' && png.length > 2000, `PNG of ${png.length} bytes`);
    const svg = fs.readFileSync(files.SVG, 'utf8');
    assert(svg.startsWith('<svg') && svg.includes('<image') && svg.includes('step'), 'SVG lacks the heatmap image or axes');
    const csv = fs.readFileSync(files.CSV, 'utf8').trim().split(/\r?\n/);
    assert(csv[0].startsWith('run,feature,step_'), `CSV header: ${csv[0]}`);
    assert(csv.length === config.tabular_features.length + 1, `CSV has ${csv.length - 1} rows, expected every feature`);
    for (const card of ['topk', 'probe', 'stability']) {
      for (const format of ['PNG', 'SVG', 'CSV']) {
        const file = await download(page, frame, card, format);
        assert(fs.statSync(file).size > 100, `${card} ${format} is nearly empty`);
      }
    }
    return Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${path.basename(f)} (${fs.statSync(f).size} bytes)`]));
  });

  // The method agreement card: one line per pair of logged methods, a pair matrix, a hover read-out, exports.
  const methodPairs = async () => {
    const methods = (await frame.$$eval('select[name=method] option', (o) => o.map((x) => x.value))).sort();
    return methods.flatMap((a, i) => methods.slice(i + 1).map((b) => `${a} × ${b}`));
  };

  await check('agreement_draws', async () => {
    await drawn(frame, 'agreement', `${tabular}|`);
    const pairs = await methodPairs();
    assert(pairs.length >= 3, `expected several method pairs, got ${pairs}`);
    const lines = await frame.$$eval('#agreement g.series path', (paths) => paths.filter((p) => (p.getAttribute('d') ?? '').length > 20).length);
    assert(lines === pairs.length, `agreement drew ${lines} lines for ${pairs.length} pairs`);
    // Each legend entry is its text node (the name as drawn) plus a <title> with the full name.
    const legend = await frame.$$eval('#agreement .legend text', (texts) => texts.map((t) => t.firstChild.textContent));
    const missing = pairs.filter((p) => !legend.includes(p));
    assert(missing.length === 0, `pairs missing from the legend: ${missing}; legend: ${legend}`);
    const cells = await frame.$$eval('#agreement .matrix .cell', (gs) => gs.map((g) => ({ pair: g.dataset.pair, fill: g.querySelector('rect').getAttribute('fill'), text: g.textContent })));
    assert(cells.length === pairs.length, `matrix has ${cells.length} cells for ${pairs.length} pairs`);
    assert(pairs.every((p) => cells.some((c) => c.pair === p)), `matrix cells ${cells.map((c) => c.pair)}`);
    const fills = new Set(cells.map((c) => c.fill));
    assert(fills.size >= 3, `matrix looks blank: ${[...fills]}`);
    assert(cells.every((c) => /^-?\d\.\d\d$|^–$/.test(c.text)), `cell labels: ${cells.map((c) => c.text)}`);
    const note = await frame.textContent('#agreement .note');
    assert(/pairs agree/.test(note), `agreement summary: ${note}`);
    await shoot(frame, 'agreement', 'agreement');
    return { pairs: pairs.length, lines, colours: fills.size, note };
  });

  await check('agreement_hover_and_pick', async () => {
    const area = frame.locator('#agreement .lines rect[fill=transparent]');
    const box = await area.boundingBox();
    await area.hover({ position: { x: box.width * 0.6, y: box.height * 0.3 } });
    const tip = frame.locator('#agreement .lines .tooltip');
    await tip.waitFor({ state: 'visible', timeout: 5000 });
    const lines = await tip.locator('div').allTextContents();
    const pairs = await methodPairs();
    assert(/^step: \d+$/.test(lines[0]) && pairs.includes(lines[1]) && /^ρ: -?[\d.e-]+$/.test(lines[2]), `tooltip: ${lines}`);
    const faded = await frame.$$eval('#agreement g.series path', (paths) => paths.filter((p) => p.style.opacity !== '').length);
    assert(faded === pairs.length - 1, `hover should bring out one line, ${faded} of ${pairs.length} faded`);
    await frame.locator('#agreement .matrix .cell').first().hover();
    const cellTip = await frame.locator('#agreement .matrix .tooltip').textContent();
    assert(/pair: .+ × .+step: \d+ρ: /.test(cellTip), `matrix tooltip: ${cellTip}`);
    // A click on the chart picks that step for the whole tab: the probe explorer and the matrix follow.
    await area.click({ position: { x: 1, y: box.height / 2 } });
    await drawn(frame, 'probe', `${tabular}|`);
    await frame.waitForSelector('#agreement[data-drawn$="|0"]', { timeout: 5000 });
    const title = await frame.textContent('#agreement .matrix svg > text');
    assert(title === 'ρ at step 0', `matrix title after picking step 0: ${title}`);
    const probeStep = await frame.textContent('#probe .step-label');
    assert(probeStep === 'step 0', `probe explorer shows ${probeStep}`);
    await area.click({ position: { x: box.width - 1, y: box.height / 2 } });
    await page.mouse.move(0, 0);
    return { tooltip: lines, cellTip, probeStep };
  });

  await check('agreement_export', async () => {
    const files = {};
    for (const format of ['PNG', 'SVG', 'CSV']) files[format] = await download(page, frame, 'agreement', format);
    const png = fs.readFileSync(files.PNG);
    assert(png.subarray(1, 4).toString() === 'PNG' && png.length > 5000, `PNG of ${png.length} bytes`);
    const svg = fs.readFileSync(files.SVG, 'utf8');
    const pairs = await methodPairs();
    assert(svg.startsWith('<svg') && svg.includes('Spearman ρ') && svg.includes(pairs[0]), 'SVG lacks the axes or the legend');
    const csv = fs.readFileSync(files.CSV, 'utf8').trim().split(/\r?\n/);
    assert(/^run,step,method_a,method_b,spearman,top\d+_overlap$/.test(csv[0]), `CSV header: ${csv[0]}`);
    const [a, b] = pairs[0].split(' × ');
    assert(csv.some((row) => row.includes(`,${a},${b},`)), `CSV lacks pair ${pairs[0]}`);
    assert(csv.length - 1 >= pairs.length, `CSV has ${csv.length - 1} rows for ${pairs.length} pairs`);
    return Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${path.basename(f)} (${fs.statSync(f).size} bytes)`]));
  });

  await check('image_run_draws', async () => {
    await selectRun(frame, image);
    const strip = await canvasStats(frame, '#evolution .filmstrip canvas');
    assert(strip.colours > 10, `filmstrip looks blank: ${JSON.stringify(strip)}`);
    const overlay = await canvasStats(frame, '#probe canvas.overlay');
    assert(overlay.colours > 10, `probe overlay looks blank: ${JSON.stringify(overlay)}`);
    // Never near-black: the mean luminance of the overlay stays light.
    const luminance = await frame.$eval('#probe canvas.overlay', (canvas) => {
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let sum = 0;
      for (let i = 0; i < data.length; i += 4) sum += 0.2126 * data[i] + 0.7152 * data[i + 1] + 0.0722 * data[i + 2];
      return sum / (data.length / 4);
    });
    assert(luminance > 100, `overlay is dark: mean luminance ${luminance}`);
    await shoot(frame, 'evolution', 'evolution_filmstrip');
    return { strip, overlay, luminance };
  });

  await check('slider_changes_image', async () => {
    const slider = frame.locator('input[name=step]');
    await slider.fill('0');
    const first = { step: await frame.getAttribute('#probe canvas.overlay', 'data-step'), ...(await canvasStats(frame, '#probe canvas.overlay')) };
    const max = await slider.getAttribute('max');
    await slider.fill(max);
    const last = { step: await frame.getAttribute('#probe canvas.overlay', 'data-step'), ...(await canvasStats(frame, '#probe canvas.overlay')) };
    assert(first.step !== last.step, `slider did not change the step: ${first.step}`);
    assert(first.hash !== last.hash, 'slider changed the step but not the image');
    await slider.fill('0');
    await frame.click('#probe button.play');
    await frame.waitForFunction((step) => document.querySelector('#probe canvas.overlay')?.dataset.step !== step, first.step, { timeout: 5000 })
      .catch(() => { throw new Error('play did not advance the step'); });
    const playing = await frame.getAttribute('#probe canvas.overlay', 'data-step');
    await frame.click('#probe button.play');
    return { first: first.step, last: last.step, after_play: playing };
  });

  await check('compare_methods_side_by_side', async () => {
    const options = await frame.$$eval('select[name=compare] option', (o) => o.map((x) => x.value).filter(Boolean));
    assert(options.length > 0, 'nothing to compare with');
    const method = await frame.inputValue('select[name=method]');
    await frame.selectOption('select[name=compare]', options[0]);
    await drawn(frame, 'probe', `${image}|`);
    await frame.waitForSelector(`#probe[data-drawn*="${method}+${options[0]}"]`);
    const panels = await frame.$$eval('#probe canvas.overlay', (canvases) => canvases.length);
    assert(panels === 2, `${panels} overlay panels`);
    const slider = frame.locator('input[name=step]');
    await slider.fill(await slider.getAttribute('max'));
    await shoot(frame, 'probe', 'probe_image_compare');
    return { method, compare: options[0] };
  });

  await check('names_render_as_text', async () => {
    await selectRun(frame, xss);
    const labels = await frame.$$eval('#evolution .row-labels title', (titles) => titles.map((t) => t.textContent));
    assert(labels.includes(config.xss_name), `the feature is not shown literally: ${labels}`);
    const legend = await frame.$$eval('#topk .legend title', (titles) => titles.map((t) => t.textContent));
    assert(legend.includes(config.xss_name), 'the top-k legend does not show the name literally');
    // One method only: the agreement card says so in one line instead of drawing.
    const note = await frame.textContent('#agreement .note');
    assert(/^Only one method \(saliency\)/.test(note), `single-method agreement note: ${note}`);
    const figure = await frame.$$eval('#agreement .figure *', (nodes) => nodes.length);
    assert(figure === 0, `agreement card drew ${figure} elements for one method`);
    const images = await frame.$$eval('img', (imgs) => imgs.length);
    assert(images === 0, `${images} <img> elements were created from data`);
    // Two animation frames: anything the names could have started (an image load, a script) has had its turn.
    await frame.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    assert(dialogs.length === 0, `a dialog fired: ${dialogs}`);
    return { labels };
  });

  await check('reload_shows_new_steps', async () => {
    // A run still training: one more epoch is logged while the tab is open, then TensorBoard reloads.
    await selectRun(frame, xss);
    const before = await frame.getAttribute('#evolution', 'data-drawn');
    assert(before === `${xss}|saliency|3`, `evolution drawn as ${before} before the new step`);
    execFileSync(config.grow[0], config.grow.slice(1), { stdio: 'ignore' });
    const deadline = Date.now() + 60000;
    for (;;) {
      const { runs } = await (await fetch(new URL('data/plugin/tb_xai/runs', config.url))).json();
      if (runs.find((r) => r.run === xss)?.prediction_steps.length === 4) break;
      assert(Date.now() < deadline, 'TensorBoard never listed the new step');
      await page.waitForTimeout(500);
    }
    await page.click('button.reload-button');
    await frame.waitForSelector(`#evolution[data-drawn="${xss}|saliency|4"]:not([aria-busy])`, { timeout: 30000 });
    await drawn(frame, 'stability', `${xss}|saliency|`);
    const steps = await frame.$$eval('#stability g.series path', (paths) => paths.filter((p) => (p.getAttribute('d') ?? '').length > 20).length);
    assert(steps === 4, `stability drew ${steps} lines over the 4 steps, expected 4`);
    const rows = await frame.$$eval('#evolution canvas.cells', (c) => c.length);
    assert(rows === 1, 'the evolution heatmap is gone after the reload');
    return { before, after: await frame.getAttribute('#evolution', 'data-drawn'), stabilityPaths: steps };
  });

  await check('one_step_run_draws', async () => {
    const { onestep } = config.runs;
    await selectRun(frame, onestep);
    const note = await frame.textContent('#stability .note');
    assert(/Only step 0 is logged so far/.test(note) && !/Not settled/.test(note), `stability note of one step: ${note}`);
    const stability = await (await fetch(new URL(`data/plugin/tb_xai/stability?run=${onestep}&method=saliency&k=5`, config.url))).json();
    const finite = ['spearman_previous', 'topk_previous', 'spearman_last', 'topk_last'].filter((k) => stability[k][0] !== null).length;
    const dots = await frame.$$eval('#stability g.series circle', (circles) => circles.map((c) => Number(c.getAttribute('cy'))));
    assert(dots.length === finite, `stability drew ${dots.length} dots for ${finite} finite values (a null drawn as 0?)`);
    assert(dots.every(Number.isFinite), `dots at ${dots}`);
    const heatmap = await canvasStats(frame, '#evolution canvas.cells');
    assert(heatmap.colours > 2, 'one-step heatmap looks blank');
    // No class names logged: the target filter still offers the 3 classes, by index.
    const targets = await frame.$$eval('select[name=target] option', (o) => o.map((x) => x.textContent));
    assert(JSON.stringify(targets) === JSON.stringify(['all probes', 'explained as class 0', 'explained as class 1', 'explained as class 2']), `target options: ${targets}`);
    await frame.selectOption('select[name=target]', '1');
    for (const card of ['evolution', 'topk', 'probe', 'stability', 'agreement']) await drawn(frame, card, `${onestep}|`);
    await settled(frame);
    const statuses = await frame.$$eval('.card .status', (s) => s.map((x) => x.textContent).filter(Boolean));
    assert(statuses.length === 0, `cards report errors for target 1: ${statuses}`);
    await frame.selectOption('select[name=target]', 'all');
    return { note, dots: dots.length, targets };
  });

  await check('hostile_hash_stays_consistent', async () => {
    const bad = [];
    const onResponse = (response) => { if (response.url().includes('/data/plugin/tb_xai/') && response.status() >= 400) bad.push(`${response.status()} ${response.url()}`); };
    page.on('response', onResponse);
    try {
      await page.goto('about:blank');
      await page.goto(`${config.url.replace(/\/$/, '')}/#tb_xai&run=${encodeURIComponent(tabular)}&k=0&target=-1&probe=1e21`);
      frame = await tabFrame(page);
      for (const card of ['evolution', 'topk', 'probe', 'stability', 'agreement']) await drawn(frame, card, `${tabular}|`);
      const controls = { k: await frame.inputValue('input[name=k]'), target: await frame.inputValue('select[name=target]'), probe: await frame.inputValue('select[name=probe]') };
      assert(JSON.stringify(controls) === JSON.stringify({ k: '1', target: 'all', probe: '0' }), `controls: ${JSON.stringify(controls)}`);
      const hash = new URL(page.url()).hash;
      assert(hash.includes('&k=1') && hash.includes('&target=all') && hash.includes('&probe=0'), `the URL keeps hostile values: ${hash}`);
      for (const [k, target] of [['1e21', '1.5'], ['999', '0x1'], ['3', '1e0']]) {
        await page.goto('about:blank');
        await page.goto(`${config.url.replace(/\/$/, '')}/#tb_xai&run=${encodeURIComponent(tabular)}&k=${k}&target=${target}`);
        frame = await tabFrame(page);
        for (const card of ['evolution', 'stability', 'agreement']) await drawn(frame, card, `${tabular}|`);
        const got = { k: await frame.inputValue('input[name=k]'), target: await frame.inputValue('select[name=target]') };
        const kOk = Number(got.k) >= 1 && Number(got.k) <= 50;
        assert(kOk && got.target === 'all', `k=${k}, target=${target} shows ${JSON.stringify(got)}`);
      }
      await settled(frame);
      const statuses = await frame.$$eval('.card .status', (s) => s.map((x) => x.textContent).filter(Boolean));
      assert(statuses.length === 0 && bad.length === 0, `errors: ${statuses} ${bad}`);
      return controls;
    } finally {
      page.off('response', onResponse);
    }
  });

  await check('failures_only_run_lists_failures_then_draws', async () => {
    const { url, run, heal } = config.failing;
    frame = await openTab(page, url);
    await frame.waitForSelector('ul.failures li', { timeout: 20000 });
    const items = await frame.$$eval('ul.failures li', (li) => li.map((x) => x.textContent));
    assert(items.some((t) => t.includes('saliency') && t.includes('ValueError: the model has no gradient here')), `failures: ${items}`);
    const message = await frame.textContent('p.message');
    assert(/failed/.test(message) && !(await frame.isHidden('p.message')), `message: ${message}`);
    assert(await frame.isHidden('.cards'), 'the cards show with nothing to draw');
    execFileSync(heal[0], heal.slice(1), { stdio: 'ignore' });
    const deadline = Date.now() + 60000;
    for (;;) {
      const { runs } = await (await fetch(new URL('data/plugin/tb_xai/runs', url))).json();
      if (runs.find((r) => r.run === run)?.methods.some((m) => m.inputs.length > 0)) break;
      assert(Date.now() < deadline, 'TensorBoard never listed the healed step');
      await page.waitForTimeout(500);
    }
    await page.click('button.reload-button');
    await frame.waitForSelector(`#evolution[data-drawn^="${run}|saliency|"]:not([aria-busy])`, { timeout: 30000 });
    assert(!(await frame.isHidden('.cards')), 'the cards stay hidden after the reload');
    const failures = await frame.$$eval('ul.failures li', (li) => li.map((x) => x.textContent));
    assert(failures.some((t) => /saliency failed at 1 step/.test(t)), `failures after the reload: ${failures}`);
    return { items, failures };
  });

  // ---- issue 14: runs compared, dark theme, live polling, and the defects a new user hit ----------------------
  const api = async (route) => (await fetch(new URL(`data/plugin/tb_xai/${route}`, config.url))).json();
  const { tabular_b, digits_b, regression, diverged } = config.runs;
  const open = async (hash = '') => {
    await page.goto('about:blank');
    frame = await openTab(page, config.url, hash);
    return frame;
  };
  const hex = (rgbText) => '#' + (rgbText.match(/\d+/g) ?? []).slice(0, 3).map((n) => Number(n).toString(16).padStart(2, '0')).join('');
  const strokes = (card) => frame.$$eval(`#${card} g.series path`, (paths) => [...new Set(paths.filter((p) => (p.getAttribute('d') ?? '').length > 20).map((p) => p.getAttribute('stroke')))]);
  const csvRows = (file) => fs.readFileSync(file, 'utf8').trim().split(/\r?\n/).map((row) => row.split(','));

  await check('default_opens_the_latest_run_with_data', async () => {
    await open();
    await frame.evaluate(() => localStorage.clear());
    await page.goto('about:blank');
    await page.goto(`${config.url.replace(/\/$/, '')}/#tb_xai`);
    frame = await tabFrame(page);
    const { runs } = await api('runs');
    const newest = runs.reduce((a, b) => ((b.last_written ?? 0) > (a.last_written ?? 0) ? b : a));
    const diverged_ = runs.find((r) => r.run === diverged);
    assert(diverged_.last_written !== null && !diverged_.methods.some((m) => m.inputs.length), `the diverged run: ${JSON.stringify(diverged_)}`);
    const withData = runs.filter((r) => r.methods.some((m) => m.inputs.length));
    const latest = withData.reduce((a, b) => ((b.last_written ?? 0) > (a.last_written ?? 0) ? b : a));
    assert(latest.run !== runs[0].run, `the fixture's latest run ${latest.run} is also the first by name`);
    // Whichever run it opened, once drawn (a first draw under the suite's load has taken over 20 s): a wrong
    // default fails on its name, not on a timeout.
    await frame.waitForSelector('#evolution[data-drawn]:not([aria-busy])', { timeout: 60000 });
    const shown = await frame.inputValue('select[name=run]');
    assert(shown === latest.run, `opened ${shown}, the most recently written run with data is ${latest.run}`);
    await drawn(frame, 'evolution', `${latest.run}|`);
    return { shown, first_by_name: runs[0].run, newest: newest.run };
  });

  await check('topk_of_an_image_run_is_its_ranking', async () => {
    await open(`&run=${encodeURIComponent(image)}&k=5&method=saliency`);
    await drawn(frame, 'topk', `${image}|`);
    const method = await frame.inputValue('select[name=method]');
    const expected = config.image_rankings[method];
    const legend = await frame.$$eval('#topk .legend title', (t) => t.map((x) => x.textContent));
    assert(JSON.stringify(legend.slice(0, 5)) === JSON.stringify(expected), `top-k card shows ${legend}, tb_xai.load ranks ${expected}`);
    const csv = csvRows(await download(page, frame, 'topk', 'CSV'));
    assert(JSON.stringify(csv[0].slice(1, 6)) === JSON.stringify(expected.map((n) => (n.includes(',') ? `"${n}"` : n))) || csv[0].join(',').includes(expected[0]),
      `top-k CSV columns ${csv[0]}`);
    return { method, legend };
  });

  await check('diverged_run_is_listed_with_its_failures', async () => {
    const options = await frame.$$eval('select[name=run] option', (o) => o.map((x) => ({ value: x.value, label: x.textContent })));
    const entry = options.find((o) => o.value === diverged);
    assert(entry && /failed/.test(entry.label), `run menu: ${JSON.stringify(options)}`);
    await frame.selectOption('select[name=run]', diverged);
    await frame.waitForSelector('ul.failures li', { timeout: 10000 });
    const items = await frame.$$eval('ul.failures li', (li) => li.map((x) => x.textContent));
    assert(items.some((t) => /saliency failed at every step/.test(t) && t.includes('ValueError: the model has no gradient here')), `failures: ${items}`);
    const message = await frame.textContent('p.message');
    assert(message.includes(diverged) && (await frame.isVisible('p.message')) && (await frame.isHidden('.cards')), `message: ${message}`);
    await selectRun(frame, tabular);
    assert(await frame.isVisible('.cards'), 'the cards stay hidden after choosing a run with data');
    return { label: entry.label, items };
  });

  await check('another_run_opens_at_its_last_step', async () => {
    const slider = frame.locator('input[name=step]');
    await slider.fill('3');
    assert((await frame.textContent('#probe .step-label')) === 'step 3', 'the slider did not move to step 3');
    await selectRun(frame, image);
    const { runs } = await api('runs');
    const steps = runs.find((r) => r.run === image).methods.find((m) => m.inputs.length).inputs[0].steps;
    const label = await frame.textContent('#probe .step-label');
    assert(label === `step ${steps[steps.length - 1]}`, `the image run opened at ${label}, its last step is ${steps[steps.length - 1]}`);
    return { label };
  });

  await check('regression_has_no_class_filter', async () => {
    await selectRun(frame, regression);
    assert(await frame.isHidden('select[name=target]'), 'a regression run is offered a class filter');
    const note = await frame.textContent('#probe .note');
    assert(!/class/.test(note) && /label: -?\d/.test(note), `probe note of a regression run: ${note}`);
    const legend = await frame.$$eval('#probe .lines .legend text', (t) => t.map((x) => x.firstChild.textContent));
    assert(JSON.stringify(legend) === JSON.stringify(['output']), `prediction legend: ${legend}`);
    return { note };
  });

  await check('filmstrip_has_a_colour_scale', async () => {
    await selectRun(frame, image);
    const legends = await frame.$$eval('#evolution .filmstrip .color-legend', (gs) => gs.map((g) => ({ title: g.dataset.title, ticks: g.querySelectorAll('.tick').length, stops: g.querySelectorAll('stop').length })));
    assert(legends.length === 1 && legends[0].ticks >= 2 && legends[0].stops >= 2, `filmstrip colour scale: ${JSON.stringify(legends)}`);
    const svg = fs.readFileSync(await download(page, frame, 'evolution', 'SVG'), 'utf8');
    assert(svg.includes('color-legend') && svg.includes(legends[0].title), 'the SVG export lacks the colour scale');
    // A pixel is named as tb_xai.load names it ("pixel (row, col)"), in the tooltip too.
    await frame.locator('#evolution .filmstrip canvas').hover({ position: { x: 20, y: 30 } });
    const tip = await frame.locator('#evolution .filmstrip .tooltip').textContent();
    assert(/pixel \(\d+, \d+\)/.test(tip), `filmstrip tooltip: ${tip}`);
    await page.mouse.move(0, 0);
    return { ...legends[0], tip };
  });

  await check('prediction_legend_shows_every_class', async () => {
    const legend = await frame.$$eval('#probe .lines .legend text', (t) => t.map((x) => x.firstChild.textContent));
    assert(legend.length === 10, `the digits probe's prediction legend shows ${legend.length} of 10 classes: ${legend}`);
    return legend;
  });

  await check('method_configuration_is_shown', async () => {
    await selectRun(frame, tabular);
    await frame.selectOption('select[name=method]', 'integrated_gradients');
    await drawn(frame, 'evolution', `${tabular}|integrated_gradients|`);
    const text = await frame.textContent('p.config');
    const { runs } = await api('runs');
    const config_ = runs.find((r) => r.run === tabular).methods.find((m) => m.method === 'integrated_gradients').inputs[0].config;
    const keys = Object.keys(config_);
    assert(keys.length > 0 && keys.every((key) => text.includes(`${key}=`)) && text.startsWith('integrated_gradients configuration:'), `config line: ${text}; logged ${JSON.stringify(config_)}`);
    return text;
  });

  await check('agreement_axis_fits_the_data', async () => {
    await drawn(frame, 'agreement', `${tabular}|`);
    const k = await frame.inputValue('input[name=k]');
    const answer = await api(`agreement?run=${encodeURIComponent(tabular)}&k=${k}`);
    const values = answer.pairs.flatMap((p) => p.spearman).filter((v) => v !== null);
    const lo = Math.min(...values, 0.7);
    const hi = Math.max(...values, 0.7);
    const ticks = await frame.$$eval('#agreement .lines svg > g:nth-of-type(2) .tick text', (t) => t.map((x) => Number(x.textContent.replace('−', '-'))));
    assert(Math.min(...ticks) >= lo - 0.2 && Math.max(...ticks) <= Math.min(1, hi + 0.2), `y ticks ${ticks} for ρ in [${lo}, ${hi}]`);
    const label = await frame.$eval('#agreement .reference-label', (t) => ({ x: Number(t.getAttribute('x')), text: t.textContent }));
    const area = await frame.$eval('#agreement .lines rect[fill=transparent]', (r) => Number(r.getAttribute('x')) + Number(r.getAttribute('width')));
    assert(label.x >= area, `the threshold label (x=${label.x}) is drawn inside the plot (right edge ${area})`);
    return { ticks, label };
  });

  await check('compare_two_runs', async () => {
    await frame.click('button.runs-button');
    await frame.check(`input[name=compare-run][value="${tabular_b}"]`);
    const key = `${tabular}+${tabular_b}|`;
    for (const card of ['evolution', 'topk', 'stability', 'agreement']) await drawn(frame, card, key);
    await page.mouse.click(5, 5);
    const heatmaps = await frame.$$eval('#evolution .heatmap', (h) => h.length);
    assert(heatmaps === 3, `${heatmaps} heatmaps: expected A, B and B − A`);
    const legends = await frame.$$eval('#evolution .color-legend', (g) => g.map((x) => x.dataset.title));
    assert(legends.length === 2, `colour scales ${legends}: one shared by the runs, one for the difference`);
    const chips = await frame.$$eval('.run-legend .run-chip', (c) => c.map((x) => ({ run: x.dataset.run, color: getComputedStyle(x.querySelector('.swatch')).backgroundColor })));
    assert(chips.length === 2 && chips[0].run === tabular && chips[1].run === tabular_b, `run legend ${JSON.stringify(chips)}`);
    const colours = chips.map((c) => hex(c.color)).sort();
    for (const card of ['topk', 'stability', 'agreement']) {
      const used = (await strokes(card)).sort();
      assert(JSON.stringify(used) === JSON.stringify(colours), `${card} lines use ${used}, the runs are ${colours}`);
    }
    // B − A at aligned steps, from the two runs' own answers; the shorter run's missing steps stay empty.
    const a = await api(`evolution?run=${encodeURIComponent(tabular)}&method=integrated_gradients`);
    const b = await api(`evolution?run=${encodeURIComponent(tabular_b)}&method=integrated_gradients`);
    assert(a.steps.length === 20 && b.steps.length === 12, `run lengths ${a.steps.length}, ${b.steps.length}`);
    const csv = csvRows(await download(page, frame, 'evolution', 'CSV'));
    const header = csv[0];
    const feature = a.layout.names[a.order[0]];
    const row = (run) => csv.find((r) => r[0] === run && r[1] === feature);
    const diffRow = row(`${tabular_b} - ${tabular}`);
    assert(diffRow, `no difference row for ${feature}`);
    const column = (step) => header.indexOf(`step_${step}`);
    const i = a.order[0];
    for (const step of [0, 11]) {
      const want = b.importance[b.steps.indexOf(step)][i] - a.importance[a.steps.indexOf(step)][i];
      const got = Number(diffRow[column(step)]);
      assert(Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(want)), `B − A of ${feature} at step ${step}: ${got}, expected ${want}`);
    }
    assert(diffRow[column(15)] === '' && row(tabular_b)[column(15)] === '' && row(tabular)[column(15)] !== '', 'step 15 (only in A) is not empty in B and B − A');
    // The probe explorer explains one run: the baseline, or the compared run chosen in its card.
    await drawn(frame, 'probe', `${tabular}|`);
    assert(await frame.isVisible('select[name=probe-run]'), 'the probe explorer offers no choice of run');
    await frame.selectOption('select[name=probe-run]', tabular_b);
    await drawn(frame, 'probe', `${tabular_b}|`);
    const max = await frame.getAttribute('input[name=step]', 'max');
    assert(max === '11' && (await frame.textContent('#probe .step-label')) === 'step 11', `probe explorer of the 12-step run: slider max ${max}`);
    await shoot(frame, 'evolution', 'compare_runs');
    await shoot(frame, 'topk', 'compare_topk');
    return { heatmaps, legends, colours };
  });

  await check('compare_image_runs', async () => {
    await open(`&run=${encodeURIComponent(image)}&runs=${encodeURIComponent(digits_b)}&method=saliency`);
    const key = `${image}+${digits_b}|saliency|`;
    await drawn(frame, 'evolution', key);
    const strips = await frame.$$eval('#evolution .filmstrip', (f) => f.length);
    assert(strips === 3, `${strips} filmstrips: expected A, B and B − A`);
    const missing = await frame.$$eval('#evolution .filmstrip text', (t) => t.filter((x) => x.textContent === 'not logged').length);
    assert(missing > 0, 'the 6-step run shows no gap at the steps it did not log');
    const titles = await frame.$$eval('#evolution svg.title text', (t) => t.map((x) => x.textContent));
    assert(titles.join('|') === `${image}|${digits_b}|${digits_b} − ${image}`, `strip titles ${titles}`);
    await shoot(frame, 'evolution', 'compare_filmstrip');
    return { strips, missing, titles };
  });

  await check('dark_theme_follows_tensorboard', async () => {
    await open(`&run=${encodeURIComponent(tabular)}&runs=${encodeURIComponent(tabular_b)}&method=integrated_gradients`);
    await drawn(frame, 'evolution', `${tabular}+${tabular_b}|`);
    const luminance = () => frame.$eval('#evolution canvas.cells', (canvas) => {
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let sum = 0;
      for (let i = 0; i < data.length; i += 4) sum += 0.2126 * data[i] + 0.7152 * data[i + 1] + 0.0722 * data[i + 2];
      return sum / (data.length / 4);
    });
    const light = { card: await frame.$eval('#evolution', (c) => getComputedStyle(c).backgroundColor), cells: await luminance() };
    // TensorBoard reads the browser's preference when its page loads.
    await page.emulateMedia({ colorScheme: 'dark' });
    await open(`&run=${encodeURIComponent(tabular)}&runs=${encodeURIComponent(tabular_b)}&method=integrated_gradients`);
    await page.waitForFunction(() => document.body.classList.contains('dark-mode'), null, { timeout: 10000 })
      .catch(() => { throw new Error('TensorBoard itself did not go dark'); });
    await frame.waitForFunction(() => document.body.dataset.theme === 'dark', null, { timeout: 10000 });
    await drawn(frame, 'topk', `${tabular}+${tabular_b}|`);
    await frame.waitForFunction(() => getComputedStyle(document.querySelector('#evolution')).backgroundColor === 'rgb(48, 48, 48)', null, { timeout: 5000 });
    const dark = {
      card: await frame.$eval('#evolution', (c) => getComputedStyle(c).backgroundColor),
      page: await frame.evaluate(() => getComputedStyle(document.body).backgroundColor),
      labels: await frame.$$eval('#evolution .row-labels text', (t) => [...new Set(t.map((x) => x.getAttribute('fill')))]),
      legend: await frame.$$eval('#topk .legend text', (t) => [...new Set(t.map((x) => x.getAttribute('fill')))]),
      cells: await luminance(),
    };
    assert(dark.labels.join() === '#e0e0e0' && dark.legend.join() === '#e0e0e0', `labels drawn in ${dark.labels} / ${dark.legend} on the dark card`);
    assert(dark.cells < light.cells - 40, `heatmap cells did not darken: ${light.cells} -> ${dark.cells}`);
    const svg = fs.readFileSync(await download(page, frame, 'topk', 'SVG'), 'utf8');
    assert(svg.includes('fill="#303030"'), 'the SVG export is not drawn on the dark card');
    // The selection bar and the first two rows of cards: the comparison, dark.
    await frame.$eval('nav.controls', (nav) => { nav.style.position = 'static'; });
    const file = path.join(config.screenshots, 'dark_theme.png');
    const main = await frame.locator('main.tb-xai').boundingBox();
    const stability = await frame.locator('#stability').boundingBox();
    await page.screenshot({ path: file, clip: { x: main.x, y: main.y, width: main.width, height: stability.y + stability.height + 12 - main.y } });
    await frame.$eval('nav.controls', (nav) => { nav.style.position = ''; });
    screenshots.push(file);
    // TensorBoard's own toggle (its settings) flips the class on its page: the tab follows without a reload.
    await page.evaluate(() => document.body.classList.remove('dark-mode'));
    await frame.waitForFunction(() => document.body.dataset.theme === 'light', null, { timeout: 10000 });
    const relit = await frame.$$eval('#evolution .row-labels text', (t) => [...new Set(t.map((x) => x.getAttribute('fill')))]);
    assert(relit.join() === '#424242', `after TensorBoard's toggle the labels are ${relit}`);
    await page.emulateMedia({ colorScheme: 'light' });
    return { light, dark };
  });

  await check('polls_while_a_run_grows', async () => {
    await open(`&run=${encodeURIComponent(xss)}`);
    const before = await (await drawn(frame, 'evolution', `${xss}|saliency|`)).getAttribute('data-drawn');
    const steps = Number(before.split('|')[2]);
    execFileSync(config.grow_again[0], config.grow_again.slice(1), { stdio: 'ignore' });
    // No click on TensorBoard's reload: the tab's own polling picks the new step up.
    await frame.waitForSelector(`#evolution[data-drawn="${xss}|saliency|${steps + 1}"]:not([aria-busy])`, { timeout: 60000 })
      .catch(() => { throw new Error(`the new step never appeared without a reload (drawn: ${before})`); });
    const note = await frame.textContent('p.live');
    assert(/Training in progress/.test(note) && (await frame.isVisible('p.live')), `live note: ${note}`);
    return { before, note };
  });

  await check('no_page_errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify({ checks, screenshots, dialogs })}\n`);
