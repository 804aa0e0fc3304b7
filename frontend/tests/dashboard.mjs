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
  try {
    const detail = await body();
    checks[name] = { ok: true, detail: detail ?? null };
  } catch (error) {
    checks[name] = { ok: false, detail: String(error?.stack ?? error) };
  }
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
  const [file] = await Promise.all([page.waitForEvent('download'), frame.click(`#${card} button[data-export=${format}]`)]);
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
    assert(csv[0].startsWith('feature,step_'), `CSV header: ${csv[0]}`);
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
    const axis = await frame.$$eval('#agreement .lines svg > g:nth-of-type(2) .tick text', (t) => t.map((x) => x.textContent.replace('−', '-')));
    assert(axis.includes('-1') && axis.includes('1'), `y axis ticks ${axis}`);
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
    assert(/^step,method_a,method_b,spearman,top\d+_overlap$/.test(csv[0]), `CSV header: ${csv[0]}`);
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
    assert(JSON.stringify(targets) === JSON.stringify(['all probes', 'class 0', 'class 1', 'class 2']), `target options: ${targets}`);
    await frame.selectOption('select[name=target]', '1');
    for (const card of ['evolution', 'topk', 'probe', 'stability', 'agreement']) await drawn(frame, card, `${onestep}|`);
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

  await check('no_page_errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify({ checks, screenshots, dialogs })}\n`);
