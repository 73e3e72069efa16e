// The conversion of a picture to a model's input, ported from imgcls/images.py (to_model_input:
// styles "digits", "objects", "plain") and imgcls/digits.py (to_mnist), step by step and number for
// number, so that the page gives the model what `imgcls predict` gives it for the same picture.
// Read those modules for why each step is there; the comments here only say which step is which.
//
// To give the same pixels, the port keeps the Python libraries' arithmetic: Pillow's resampling
// (fixed point for 8-bit images, float32 for "F" images), numpy's float32 rounding (Math.fround) and
// its percentile and median, scipy.ndimage's filters and labelling, scikit-image's Otsu threshold
// and Hough transform, and Python's round (half to even). Tests compare it with Python on pictures.
"use strict";

const imgclsConvert = (() => {
  const f32 = Math.fround;
  const WORKING_SIZE = 1024, WORK = 160, ZOOM = [0.5, 0.25], OPENING = 0.25, MIN_CONTRAST = 16, SNR = 8, MIN_DIGIT = 0.04;
  const PAPER_SPREAD = 5, LINE_SPAN = 0.6, LINE_THICKNESS = 0.04, THIN = 0.06, HUG = [0.3, 0.35];
  const SPECK = 0.05, GAP = 0.3, GROW = 0.1, MNIST_STROKE = 2.3, STROKE_BAND = [0.9, 1.1];
  const EDGE = 0.12, UNIFORM = 0.04, NEAR = 0.08, FAR = 0.05, CLEAN_INK = 51, POLARITY_MARGIN = 0.15;
  const BOX = [0.2, 0.06, 0.9];

  // ---- numbers as Python, numpy and Pillow make them ----

  function pyRound(x) { // Python's round(): halves go to the even neighbour
    const floor = Math.floor(x), rest = x - floor;
    if (rest !== 0.5) return rest < 0.5 ? floor : floor + 1;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  const sorted = (values) => Float64Array.from(values).sort();

  function median32(values) { // np.median of a float32 array (a float32)
    const s = sorted(values), n = s.length, half = n >> 1;
    return n % 2 ? s[half] : f32(f32(s[half - 1] + s[half]) / 2);
  }

  function percentile(values, q, float32 = true) {
    // np.percentile, method "linear"; float32: a scalar q on float32 values (numpy computes in float32),
    // else a tuple of q (numpy computes in float64)
    const s = sorted(values), n = s.length, quantile = q / 100;
    const virtual = n * quantile + (1 + quantile * -1) - 1;
    if (virtual >= n - 1) return s[n - 1];
    if (virtual < 0) return s[0];
    const previous = Math.floor(virtual), t = virtual - previous;
    const a = s[previous], b = s[previous + 1], diff = f32(b - a);
    if (!float32) return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
    return t >= 0.5 ? f32(b - f32(diff * f32(1 - t))) : f32(a + f32(diff * f32(t)));
  }

  function maximum(values) {
    let best = -Infinity;
    for (const v of values) if (v > best) best = v;
    return best;
  }

  // ---- images: {width, height, channels, data}; data is Uint8Array, or Float32Array for float ----

  const image = (width, height, channels, data) => ({ width, height, channels, data });

  function coefficients(inSize, outSize, support, filter) { // Pillow's precompute_coeffs
    const scale = inSize / outSize, filterscale = Math.max(scale, 1), reach = support * filterscale;
    const inverse = 1 / filterscale, rows = [];
    for (let xx = 0; xx < outSize; xx++) {
      const centre = (xx + 0.5) * scale;
      const xmin = Math.max(0, Math.trunc(centre - reach + 0.5));
      const xmax = Math.min(inSize, Math.trunc(centre + reach + 0.5)) - xmin;
      const k = new Float64Array(xmax);
      let total = 0;
      for (let x = 0; x < xmax; x++) total += k[x] = filter((x + xmin - centre + 0.5) * inverse);
      if (total !== 0) for (let x = 0; x < xmax; x++) k[x] /= total;
      rows.push({ xmin, k });
    }
    return rows;
  }

  const PRECISION = 2 ** 22; // Pillow's PRECISION_BITS for 8-bit images
  const fixed = (k) => k.map((w) => Math.trunc(w < 0 ? -0.5 + w * PRECISION : 0.5 + w * PRECISION));

  function resamplePass(src, outW, outH, horizontal, support, filter) {
    const { width, height, channels, data } = src;
    const rows = coefficients(horizontal ? width : height, horizontal ? outW : outH, support, filter);
    const float = data instanceof Float32Array;
    const out = float ? new Float32Array(outW * outH * channels) : new Uint8Array(outW * outH * channels);
    const weights = float ? rows.map((r) => r.k) : rows.map((r) => fixed(r.k));
    for (let y = 0; y < outH; y++) {
      for (let x = 0; x < outW; x++) {
        const { xmin } = rows[horizontal ? x : y], k = weights[horizontal ? x : y];
        for (let c = 0; c < channels; c++) {
          let sum = float ? 0 : PRECISION / 2;
          for (let i = 0; i < k.length; i++) {
            const at = horizontal ? (y * width + xmin + i) : ((xmin + i) * width + x);
            sum += data[at * channels + c] * k[i];
          }
          out[(y * outW + x) * channels + c] = float ? sum : Math.min(255, Math.max(0, Math.floor(sum / PRECISION)));
        }
      }
    }
    return image(outW, outH, channels, out);
  }

  const FILTERS = {
    box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1 : 0)],
    bilinear: [1, (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0)],
  };

  function resize(src, outW, outH, filterName) {
    // Image.resize: a horizontal and a vertical pass, the vertical first when it takes rows away, more
    // than twice as many as the horizontal takes columns (Pillow 13's order, found by trying: the order
    // changes roundings)
    const [support, filter] = FILTERS[filterName];
    const horizontal = (img) => (outW !== img.width ? resamplePass(img, outW, img.height, true, support, filter) : img);
    const vertical = (img) => (outH !== img.height ? resamplePass(img, img.width, outH, false, support, filter) : img);
    const verticalFirst = outH < src.height && src.height - outH > 2 * (src.width - outW);
    return verticalFirst ? horizontal(vertical(src)) : vertical(horizontal(src));
  }

  const scaled = (img, scale, filterName) => // sides rounded as Python rounds them, never below one pixel
    resize(img, Math.max(1, pyRound(img.width * scale)), Math.max(1, pyRound(img.height * scale)), filterName);

  function bbox(mask, width, height) { // Image.getbbox: [left, top, right, bottom], or null
    let left = width, top = height, right = -1, bottom = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (mask[y * width + x]) {
          if (x < left) left = x;
          if (x > right) right = x;
          if (y < top) top = y;
          bottom = y;
        }
      }
    }
    return right < 0 ? null : [left, top, right + 1, bottom + 1];
  }

  function crop(values, width, [top, bottom, left, right]) {
    const out = new values.constructor((bottom - top) * (right - left));
    for (let y = top; y < bottom; y++) {
      for (let x = left; x < right; x++) out[(y - top) * (right - left) + x - left] = values[y * width + x];
    }
    return out;
  }

  // ---- scipy.ndimage ----

  function minMaxFilter(values, width, height, size, origin, isMax) {
    // grey erosion (min) or dilation (max) by a size x size square, one axis at a time; the 'reflect'
    // border only repeats values inside the window, so the window is cut at the edges
    const before = (size >> 1) + origin, after = size - (size >> 1) - 1 - origin;
    let current = values;
    for (const [n, lines, step, lineStep] of [[height, width, width, 1], [width, height, 1, width]]) {
      const out = new Float32Array(current.length);
      for (let line = 0; line < lines; line++) {
        for (let i = 0; i < n; i++) {
          let best = current[line * lineStep + Math.max(0, i - before) * step];
          for (let j = Math.max(0, i - before); j <= Math.min(n - 1, i + after); j++) {
            const v = current[line * lineStep + j * step];
            if (isMax ? v > best : v < best) best = v;
          }
          out[line * lineStep + i * step] = best;
        }
      }
      current = out;
    }
    return current;
  }

  const greyErosion = (v, w, h, size) => minMaxFilter(v, w, h, size, 0, false);
  const greyDilation = (v, w, h, size) => minMaxFilter(v, w, h, size, size % 2 ? 0 : -1, true);

  function uniformFilter(values, width, height, size) { // ndimage.uniform_filter, mode 'reflect'
    let current = values;
    for (const [n, lines, step, lineStep] of [[height, width, width, 1], [width, height, 1, width]]) {
      const out = new Float32Array(current.length), r = size >> 1;
      for (let line = 0; line < lines; line++) {
        const at = (i) => current[line * lineStep + (i < 0 ? -i - 1 : i >= n ? 2 * n - i - 1 : i) * step];
        let total = 0;
        for (let l = 0; l < size; l++) total += at(l - r);
        out[line * lineStep] = total / size;
        for (let i = 1; i < n; i++) {
          total += at(i + size - 1 - r) - at(i - 1 - r);
          out[line * lineStep + i * step] = total / size;
        }
      }
      current = out;
    }
    return current;
  }

  function binaryDilation(mask, width, height, iterations = 1, limit = null) {
    // ndimage.binary_dilation with the cross; with `limit`, only its pixels may change
    let current = mask;
    for (let it = 0; it < iterations; it++) {
      const out = Uint8Array.from(current);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = y * width + x;
          if (current[i] || (limit && !limit[i])) continue;
          if ((x > 0 && current[i - 1]) || (x < width - 1 && current[i + 1]) ||
              (y > 0 && current[i - width]) || (y < height - 1 && current[i + width])) out[i] = 1;
        }
      }
      current = out;
    }
    return current;
  }

  function label(mask, width, height) {
    // ndimage.label with 8-connectivity: labels 1..count numbered in the order of their first pixel
    const parent = [0], labels = new Int32Array(mask.length);
    const find = (a) => { while (parent[a] !== a) a = parent[a] = parent[parent[a]]; return a; };
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!mask[i]) continue;
        let root = 0;
        for (const [dy, dx] of [[-1, -1], [-1, 0], [-1, 1], [0, -1]]) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || xx >= width || !labels[yy * width + xx]) continue;
          const other = find(labels[yy * width + xx]);
          if (!root) root = other;
          else if (other !== root) {
            const [low, high] = root < other ? [root, other] : [other, root];
            parent[high] = low;
            root = low;
          }
        }
        if (!root) { root = parent.length; parent.push(root); }
        labels[i] = root;
      }
    }
    const final = new Int32Array(parent.length);
    let count = 0;
    for (let i = 0; i < labels.length; i++) {
      if (!labels[i]) continue;
      const root = find(labels[i]);
      if (!final[root]) final[root] = ++count;
      labels[i] = final[root];
    }
    return [labels, count];
  }

  function distanceTransform(mask, width, height) {
    // ndimage.distance_transform_edt: exact Euclidean distance to the nearest 0 (Felzenszwalb's
    // lower envelope of parabolas along columns, then rows)
    const INF = 1e20, squared = new Float64Array(mask.length);
    for (let i = 0; i < mask.length; i++) squared[i] = mask[i] ? INF : 0;
    const pass = (n, lines, step, lineStep) => {
      const f = new Float64Array(n), v = new Int32Array(n), z = new Float64Array(n + 1);
      for (let line = 0; line < lines; line++) {
        for (let i = 0; i < n; i++) f[i] = squared[line * lineStep + i * step];
        let k = 0;
        v[0] = 0; z[0] = -Infinity; z[1] = Infinity;
        for (let q = 1; q < n; q++) {
          let s;
          while ((s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k])) <= z[k]) k--;
          k++; v[k] = q; z[k] = s; z[k + 1] = Infinity;
        }
        k = 0;
        for (let q = 0; q < n; q++) {
          while (z[k + 1] < q) k++;
          squared[line * lineStep + q * step] = (q - v[k]) * (q - v[k]) + f[v[k]];
        }
      }
    };
    pass(height, width, width, 1);
    pass(width, height, 1, width);
    return squared.map(Math.sqrt);
  }

  // ---- scikit-image ----

  function thresholdOtsu(values) { // skimage.filters.threshold_otsu on float32 values (256 bins)
    const first = values[0];
    if (values.every((v) => v === first)) return first;
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const bins = 256, step = f32(f32(hi - lo) / bins), edges = new Float32Array(bins + 1);
    for (let i = 0; i < bins; i++) edges[i] = f32(f32(i * step) + lo); // np.linspace in float32
    edges[bins] = hi;
    const counts = new Float64Array(bins), denominator = f32(hi - lo);
    for (const v of values) { // np.histogram's index, corrected against the edges as numpy does
      let i = Math.trunc(f32(f32(f32(v - lo) / denominator) * bins));
      if (i === bins) i--;
      if (v < edges[i]) i--;
      else if (v >= edges[i + 1] && i !== bins - 1) i++;
      counts[i]++;
    }
    const centres = new Float32Array(bins);
    for (let i = 0; i < bins; i++) centres[i] = f32(f32(edges[i] + edges[i + 1]) / 2);
    const weight1 = new Float32Array(bins), weight2 = new Float32Array(bins);
    const mean1 = new Float32Array(bins), mean2 = new Float32Array(bins);
    let w = 0, m = 0;
    for (let i = 0; i < bins; i++) {
      weight1[i] = w = f32(w + counts[i]);
      m = f32(m + f32(counts[i] * centres[i]));
      mean1[i] = f32(m / w);
    }
    w = 0; m = 0;
    for (let i = bins - 1; i >= 0; i--) {
      weight2[i] = w = f32(w + counts[i]);
      m = f32(m + f32(counts[i] * centres[i]));
      mean2[i] = f32(m / w);
    }
    let best = -1, bestVariance = -Infinity;
    for (let i = 0; i < bins - 1; i++) {
      const d = f32(mean1[i] - mean2[i + 1]);
      const variance = f32(f32(weight1[i] * weight2[i + 1]) * f32(d * d));
      if (variance > bestVariance) { bestVariance = variance; best = i; }
    }
    return centres[best];
  }

  function houghLine(mask, width, height, thetas) {
    // skimage.transform.hough_line: votes[distance + offset][theta]; round() halves away from zero
    const offset = Math.ceil(Math.sqrt(height * height + width * width)), rows = 2 * offset + 1;
    const cos = thetas.map(Math.cos), sin = thetas.map(Math.sin);
    const votes = new Uint32Array(rows * thetas.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (!mask[y * width + x]) continue;
        for (let j = 0; j < thetas.length; j++) {
          const r = cos[j] * x + sin[j] * y;
          votes[(Math.trunc(r > 0 ? r + 0.5 : r - 0.5) + offset) * thetas.length + j]++;
        }
      }
    }
    return { votes, rows, offset, cos, sin };
  }

  // ---- imgcls.digits ----

  function working(grey) { // _working: at most WORK pixels on the long side (BOX), as float32
    const long = Math.max(grey.width, grey.height);
    const img = long > WORK ? scaled(grey, WORK / long, "box") : grey;
    return image(img.width, img.height, 1, Float32Array.from(img.data));
  }

  function cleanPage(grey) { // _clean_page: [ink, mask] on a uniform page, or null for a photo
    const { width, height, data } = grey;
    if (maximum(data) - data.reduce((a, b) => (b < a ? b : a)) < MIN_CONTRAST) return null;
    const otsu = thresholdOtsu(data);
    const darkInk = median32(border(data, width, height)) > otsu;
    const onPaper = Uint8Array.from(data, (v) => (darkInk ? v > otsu : v <= otsu));
    const paper = data.filter((_, i) => onPaper[i]), strokes = data.filter((_, i) => !onPaper[i]);
    const level = median32(paper);
    const reach = Math.max(1, pyRound(NEAR * Math.max(width, height)));
    const distance = distanceTransform(onPaper, width, height);
    const far = data.filter((_, i) => distance[i] > reach);
    const sample = far.length >= FAR * data.length ? far : paper;
    const spread = f32(f32(percentile(sample, 90) - percentile(sample, 10)) / f32(2.563));
    if (spread >= f32(f32(UNIFORM) * Math.abs(f32(level - median32(strokes))))) return null;
    const raw = data.map((v) => Math.max(0, f32(darkInk ? level - v : v - level)));
    const scale = f32(255 / maximum(raw));
    const ink = raw.map((v) => f32(v * scale));
    return [image(width, height, 1, ink), digit(Uint8Array.from(ink, (v) => (v > CLEAN_INK ? 1 : 0)), width, height)];
  }

  function lightInk(grey) { // _light_ink
    const level = median32(grey.data);
    const low = percentile(grey.data, 1, false), high = percentile(grey.data, 99, false);
    const margin = ((level - low) - (high - level)) / Math.max(high - low, 1e-6);
    const inverted = image(grey.width, grey.height, 1, grey.data.map((v) => 255 - v));
    if (Math.abs(margin) < POLARITY_MARGIN) {
      const dark = flatten(inverted).data, light = flatten(grey).data;
      return percentile(dark, 99.9) > percentile(light, 99.9) ? inverted : grey;
    }
    return margin > 0 ? inverted : grey;
  }

  function border(values, width, height) { // np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    const out = [];
    for (let x = 0; x < width; x++) out.push(values[x]);
    for (let x = 0; x < width; x++) out.push(values[(height - 1) * width + x]);
    for (let y = 0; y < height; y++) out.push(values[y * width]);
    for (let y = 0; y < height; y++) out.push(values[y * width + width - 1]);
    return out;
  }

  function flatten(grey) { // _flatten
    const { width, height, data } = grey;
    const size = Math.max(3, Math.trunc(Math.min(height, width) * OPENING) | 1);
    const opened = greyDilation(greyErosion(data, width, height, size), width, height, size);
    const background = uniformFilter(opened, width, height, size);
    const ceiling = percentile(border(background, width, height), 98);
    return image(width, height, 1, data.map((v, i) => Math.max(0, f32(v - Math.min(background[i], ceiling)))));
  }

  function threshold(ink) { // _threshold: the stroke level, or null for a blank picture
    const { width, height, data } = ink, steps = [];
    if (width > 1) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x + 1 < width; x++) steps.push(Math.abs(f32(data[y * width + x + 1] - data[y * width + x])));
      }
    } else {
      for (let y = 0; y + 1 < height; y++) steps.push(Math.abs(f32(data[y + 1] - data[y])));
    }
    const noise = steps.length ? f32(f32(1.4826) * median32(steps)) / Math.SQRT2 : 0;
    if (maximum(data) < Math.max(MIN_CONTRAST, SNR * noise)) return null;
    const otsu = thresholdOtsu(data);
    const paper = data.filter((v) => v <= otsu);
    const candidates = [otsu, f32(f32(0.2) * percentile(data, 99.9)), 3 * noise,
                        f32(median32(paper) + f32(PAPER_SPREAD * robustSigma(paper)))];
    return candidates.reduce((a, b) => (b > a ? b : a)); // Python's max keeps the first of equals
  }

  function robustSigma(values) { // _robust_sigma
    const level = median32(values);
    return f32(f32(1.4826) * median32(values.map((v) => Math.abs(f32(v - level)))));
  }

  function degrees(from, to, step) { // np.deg2rad(np.arange(from, to, step))
    const out = [];
    for (let i = 0; from + i * step < to; i++) out.push((from + i * step) * (Math.PI / 180));
    return out;
  }
  const HORIZONTAL = [...degrees(-90, -81.5, 0.5), ...degrees(82, 90, 0.5)];
  const VERTICAL = degrees(-8, 8.5, 0.5);

  function straightLines(mask, width, height, thetas, extent) { // _straight_lines
    const { votes, rows, offset, cos, sin } = houghLine(mask, width, height, thetas);
    let best = 0, bestVotes = -1;
    for (let j = 0; j < thetas.length; j++) {
      let top = 0;
      for (let d = 0; d < rows; d++) top = Math.max(top, votes[d * thetas.length + j]);
      if (top > bestVotes) { bestVotes = top; best = j; }
    }
    const strong = [];
    for (let d = 0; d < rows; d++) strong.push(votes[d * thetas.length + best] >= LINE_SPAN * extent);
    const lines = new Uint8Array(mask.length);
    let thickest = 0;
    if (!strong.some(Boolean)) return [lines, 0];
    const pixels = [];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (mask[y * width + x]) pixels.push([y, x, x * cos[best] + y * sin[best], extent === width ? x : y]);
      }
    }
    for (let start = 0; start < rows; start++) { // each run of neighbouring distances is one line
      if (!strong[start] || (start > 0 && strong[start - 1])) continue;
      let stop = start;
      while (stop < rows && strong[stop]) stop++;
      if (stop - start > Math.max(2, LINE_THICKNESS * extent)) continue; // a thick stroke
      const low = start - offset - 0.75, high = stop - 1 - offset + 0.75;
      const band = pixels.filter(([, , distance]) => distance >= low && distance <= high);
      const along = band.map((p) => p[3]);
      if (Math.min(...along) > 0.05 * extent || Math.max(...along) < 0.95 * extent - 1) continue;
      for (const [y, x] of band) lines[y * width + x] = 1;
      thickest = Math.max(thickest, stop - start);
    }
    return [lines, thickest];
  }

  function dropLines(mask, ink, level) { // _drop_lines: returns [mask, ink]
    const { width, height } = ink;
    if (Math.min(height, width) < 8) return [mask, ink];
    const removed = new Uint8Array(mask.length);
    let thickest = 0;
    const count = (m) => m.reduce((a, b) => a + b, 0);
    for (const [thetas, extent] of [[HORIZONTAL, width], [VERTICAL, height]]) {
      for (let round = 0; round < 3; round++) {
        const left = mask.map((m, i) => m & !removed[i]);
        const [lines, thickness] = straightLines(left, width, height, thetas, extent);
        if (!lines.some(Boolean) || count(left.map((m, i) => m & !lines[i])) < 0.02 * count(mask)) break;
        lines.forEach((l, i) => { if (l) removed[i] = 1; });
        thickest = Math.max(thickest, thickness);
      }
    }
    if (!removed.some(Boolean)) return [mask, ink];
    const around = binaryDilation(removed, width, height);
    const cleared = ink.data.map((v, i) => (around[i] ? 0 : v));
    const size = thickest + 4;
    const bridged = greyErosion(greyDilation(cleared, width, height, size), width, height, size);
    const data = cleared.map((v, i) => (around[i] ? bridged[i] : v));
    const kept = mask.map((m, i) => (around[i] ? (data[i] > level ? 1 : 0) : m));
    return [kept, image(width, height, 1, data)];
  }

  function components(labels, count, width, height) {
    // each label's area, coordinate sums and bounding box (ndimage.sum_labels, find_objects)
    const area = new Float64Array(count), sumY = new Float64Array(count), sumX = new Float64Array(count);
    const top = new Int32Array(count).fill(height), bottom = new Int32Array(count);
    const left = new Int32Array(count).fill(width), right = new Int32Array(count);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const l = labels[y * width + x] - 1;
        if (l < 0) continue;
        area[l]++; sumY[l] += y; sumX[l] += x;
        top[l] = Math.min(top[l], y); bottom[l] = Math.max(bottom[l], y + 1);
        left[l] = Math.min(left[l], x); right[l] = Math.max(right[l], x + 1);
      }
    }
    return { area, sumY, sumX, top, bottom, left, right };
  }

  function digit(mask, width, height) { // _digit: the digit's components
    mask = withoutBoxes(mask, width, height);
    const [labels, count] = label(mask, width, height);
    if (count <= 1) return mask;
    const { area, sumY, sumX, top, bottom, left, right } = components(labels, count, width, height);
    const notDigit = new Uint8Array(count);
    const contact = (pick, length) => {
      const hits = new Float64Array(count);
      for (const l of pick) if (l) hits[l - 1]++;
      return hits.map((h) => h / length);
    };
    const column = (x) => Array.from({ length: height }, (_, y) => labels[y * width + x]);
    const sides = [[labels.slice(0, width), width, true], [labels.slice((height - 1) * width), width, true],
                   [column(0), height, false], [column(width - 1), height, false]];
    for (let i = 0; i < count; i++) {
      const tall = bottom[i] - top[i], wide = right[i] - left[i];
      const span = Math.max(tall / height, wide / width);
      notDigit[i] = span >= 0.7 && area[i] < THIN * Math.max(tall, wide) ** 2 ? 1 : 0;
      if ((top[i] === 0 && bottom[i] <= EDGE * height) || (bottom[i] === height && top[i] >= (1 - EDGE) * height)
          || (left[i] === 0 && right[i] <= EDGE * width) || (right[i] === width && left[i] >= (1 - EDGE) * width)) {
        notDigit[i] = 1;
      }
    }
    for (const [side, length, horizontal] of sides) { // depth: away from that side; reach: along it
      const share = contact(side, length);
      for (let i = 0; i < count; i++) {
        const tall = bottom[i] - top[i], wide = right[i] - left[i];
        const [depth, reach] = horizontal ? [tall, wide] : [wide, tall];
        if (share[i] >= HUG[0] && depth <= HUG[1] * reach) notDigit[i] = 1;
      }
    }
    const score = Array.from(area, (a, i) => {
      const off = Math.hypot(sumY[i] / a / height - 0.5, sumX[i] / a / width - 0.5);
      return a * Math.exp(-((off / 0.35) ** 2)) * (notDigit[i] ? 0 : 1);
    });
    const pick = score.some((s) => s !== 0) ? score : Array.from(area);
    const main = pick.indexOf(Math.max(...pick));
    const keep = new Uint8Array(count + 1);
    keep[main + 1] = 1;
    let [t, b, l, r] = [top[main], bottom[main], left[main], right[main]];
    const reach = GAP * Math.max(b - t, r - l);
    const candidates = [...Array(count).keys()].sort((i, j) => area[j] - area[i])
      .filter((i) => i !== main && !notDigit[i] && area[i] >= SPECK * area[main]);
    for (let joined = true; joined;) { // a joined part can bring the next one within reach
      joined = false;
      for (const i of candidates) {
        const gap = Math.max(t - bottom[i], top[i] - b, l - right[i], left[i] - r, 0);
        if (!keep[i + 1] && gap <= reach) {
          keep[i + 1] = 1; joined = true;
          t = Math.min(t, top[i]); b = Math.max(b, bottom[i]);
          l = Math.min(l, left[i]); r = Math.max(r, right[i]);
        }
      }
    }
    return Uint8Array.from(labels, (x) => keep[x]);
  }

  function withoutBoxes(mask, width, height) { // _without_boxes
    const [span, band, along] = BOX;
    const [labels, count] = label(mask, width, height);
    const { top, bottom, left, right } = components(labels, count, width, height);
    const kept = Uint8Array.from(mask);
    for (let i = 0; i < count; i++) {
      const tall = bottom[i] - top[i], wide = right[i] - left[i];
      if (tall < span * height || wide < span * width) continue;
      const side = Math.max(2, pyRound(band * Math.max(tall, wide)));
      const ring = (y, x) => !(y >= 2 * side && y < tall - 2 * side && x >= 2 * side && x < wide - 2 * side);
      const covered = [new Uint8Array(wide), new Uint8Array(wide), new Uint8Array(tall), new Uint8Array(tall)];
      let inside = false;
      for (let y = 0; y < tall; y++) {
        for (let x = 0; x < wide; x++) {
          const at = (top[i] + y) * width + left[i] + x;
          if (labels[at] === i + 1) {
            if (y < side) covered[0][x] = 1;
            if (y >= tall - side) covered[1][x] = 1;
            if (x < side) covered[2][y] = 1;
            if (x >= wide - side) covered[3][y] = 1;
          }
          if (mask[at] && !ring(y, x)) inside = true;
        }
      }
      const found = covered.map((hits) => hits.reduce((a, b) => a + b, 0) / hits.length >= along);
      const beyond = [top[i] === 0, bottom[i] === height, left[i] === 0, right[i] === width];
      const within = found.filter((seen, k) => seen && !beyond[k]).length;
      if (!inside || within < 2 || found.some((seen, k) => !seen && !beyond[k])) continue;
      for (let y = 0; y < tall; y++) {
        for (let x = 0; x < wide; x++) {
          const at = (top[i] + y) * width + left[i] + x;
          if (labels[at] === i + 1 && ring(y, x)) kept[at] = 0;
        }
      }
    }
    return kept;
  }

  function tone(ink, mask, width, height) { // _tone
    const inside = ink.filter((_, i) => mask[i]);
    const peak = f32(Math.max(percentile(inside, 90), 1e-6));
    const rim = binaryDilation(mask, width, height);
    return ink.map((v, i) => f32(f32(Math.min(1, Math.max(0, f32(v / peak))) * rim[i]) * 255));
  }

  function findInk(grey) { // find_ink: [ink, mask] at the working size, or null for a blank picture
    const work = working(grey);
    const { width, height } = work;
    const page = cleanPage(work);
    if (page) return page;
    let ink = flatten(lightInk(work));
    const level = threshold(ink);
    if (level === null) return null;
    let strong = Uint8Array.from(ink.data, (v) => (v > level ? 1 : 0));
    [strong, ink] = dropLines(strong, ink, level);
    let mask = digit(strong, width, height);
    const box = bbox(mask, width, height);
    const side = box && Math.max(box[2] - box[0], box[3] - box[1]);
    if (!box || side < MIN_DIGIT * Math.max(width, height)) return null;
    const steps = Math.max(1, pyRound(GROW * side));
    const grow = ink.data.map((v, i) => (v > level / 2 && !(strong[i] && !mask[i]) ? 1 : 0)); // not into left-out ink
    mask = binaryDilation(mask, width, height, steps, grow);
    return [image(width, height, 1, tone(ink.data, mask, width, height)), mask];
  }

  function strokeNormalised(ink, mask, [top, bottom, left, right], scale) { // _stroke_normalised
    const { width, height } = ink, w = right - left, h = bottom - top;
    const padded = new Uint8Array((w + 2) * (h + 2));
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) padded[(y + 1) * (w + 2) + x + 1] = mask[(y + top) * width + x + left];
    }
    const distance = distanceTransform(padded, w + 2, h + 2);
    let total = 0, n = 0;
    padded.forEach((m, i) => { if (m) { total += distance[i]; n++; } });
    const stroke = 2 * (total / n), target = MNIST_STROKE / scale;
    const [low, high] = STROKE_BAND;
    let radius = 0;
    if (stroke > high * target) radius = -pyRound((stroke - high * target) / 2);
    else if (stroke < low * target) radius = pyRound((low * target - stroke) / 2);
    if (radius === 0 || scale >= 1) return crop(ink.data, width, [top, bottom, left, right]);
    const r = Math.abs(radius), out = new Float32Array(w * h);
    const y0 = Math.max(top - r, 0), x0 = Math.max(left - r, 0);
    const y1 = Math.min(bottom + r, height), x1 = Math.min(right + r, width);
    for (let y = top; y < bottom; y++) { // a grey dilation or erosion by the disc, inside the window
      for (let x = left; x < right; x++) {
        let best = radius > 0 ? -Infinity : Infinity;
        for (let dy = -r; dy <= r; dy++) {
          for (let dx = -r; dx <= r; dx++) {
            const yy = y + dy, xx = x + dx;
            if (dy * dy + dx * dx > r * r + 0.5 || yy < y0 || yy >= y1 || xx < x0 || xx >= x1) continue;
            const v = ink.data[yy * width + xx];
            best = radius > 0 ? Math.max(best, v) : Math.min(best, v);
          }
        }
        out[(y - top) * w + x - left] = best;
      }
    }
    return out;
  }

  function paste(frame, outW, pixels, w, h, row, col) {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) frame[(row + y) * outW + col + x] = pixels[y * w + x];
    return frame;
  }

  const clip = (v, low, high) => Math.min(Math.max(v, low), high);

  function place(ink, mask, outH, outW) { // _place: ink in [0, 1]
    const { width } = ink;
    const frame = new Uint8Array(outH * outW);
    const [left, top, right, bottom] = bbox(mask, width, ink.height);
    const scale = pyRound(Math.min(outH, outW) * 20 / 28) / Math.max(bottom - top, right - left);
    const piece = strokeNormalised(ink, mask, [top, bottom, left, right], scale);
    const w = right - left, h = bottom - top;
    const small = scaled(image(w, h, 1, piece), scale, "bilinear");
    const pixels = Uint8Array.from(small.data, (v) => Math.trunc(f32(f32(clip(v, 0, 1) * 255) + 0.5)));
    let total = 0, sy = 0, sx = 0;
    pixels.forEach((v, i) => { total += v; sy += Math.floor(i / small.width) * v; sx += (i % small.width) * v; });
    if (!total) return frame;
    const row = clip(pyRound(outH / 2 - sy / total), 0, outH - small.height);
    const col = clip(pyRound(outW / 2 - sx / total), 0, outW - small.width);
    return paste(frame, outW, pixels, small.width, small.height, row, col);
  }

  function toMnist(grey, outH, outW) { // to_mnist
    const found = findInk(grey);
    if (!found) return new Uint8Array(outH * outW);
    const [ink, mask] = closer(grey, found) || found;
    return place(image(ink.width, ink.height, 1, ink.data.map((v) => f32(v / 255))), mask, outH, outW);
  }

  function closer(grey, [ink, mask]) { // _closer: [ink, mask] from a crop around a small digit, or null
    const { width, height } = ink;
    const [left, top, right, bottom] = bbox(mask, width, height);
    const size = Math.max(bottom - top, right - left);
    const whole = grey.width === width && grey.height === height;
    if (whole || size >= ZOOM[0] * Math.max(width, height)) return null;
    const pad = ZOOM[1] * size, scaleY = grey.height / height, scaleX = grey.width / width;
    const y0 = Math.trunc(Math.max(0, (top - pad) * scaleY));
    const y1 = Math.trunc(Math.min(grey.height, (bottom + pad) * scaleY));
    const x0 = Math.trunc(Math.max(0, (left - pad) * scaleX));
    const x1 = Math.trunc(Math.min(grey.width, (right + pad) * scaleX));
    const crop = new grey.data.constructor((y1 - y0) * (x1 - x0));
    for (let y = y0; y < y1; y++) {
      crop.set(grey.data.subarray(y * grey.width + x0, y * grey.width + x1), (y - y0) * (x1 - x0));
    }
    const found = findInk(image(x1 - x0, y1 - y0, 1, crop));
    return found && found[1].some((m) => m) ? found : null;
  }

  // ---- imgcls.images ----

  function lightOnDark(grey) { // light_on_dark, on float32 greys
    let { data } = grey;
    let edge = border(data, grey.width, grey.height);
    if (median32(edge) > 127) { data = data.map((v) => 255 - v); edge = edge.map((v) => 255 - v); }
    const level = median32(edge);
    const ink = data.map((v) => Math.max(0, f32(v - level)));
    const peak = maximum(ink);
    return image(grey.width, grey.height, 1, peak > 0 ? ink.map((v) => f32(v * f32(255 / peak))) : ink);
  }

  function placeInk(ink, outH, outW, box) { // place_ink with by_mass=False (the "objects" style)
    const { width, height, data } = ink;
    const frame = new Uint8Array(outH * outW);
    const strong = Uint8Array.from(data, (v) => (v > 51 ? 1 : 0));
    const found = bbox(strong, width, height);
    if (!found) return frame;
    const [left, top, right, bottom] = found, w = right - left, h = bottom - top;
    const scale = box / Math.max(h, w);
    const piece = crop(Uint8Array.from(data, Math.trunc), width, [top, bottom, left, right]);
    const small = scaled(image(w, h, 1, piece), scale, "bilinear");
    const row = clip(pyRound((outH - 1) / 2 - (small.height - 1) / 2), 0, outH - small.height);
    const col = clip(pyRound((outW - 1) / 2 - (small.width - 1) / 2), 0, outW - small.width);
    return paste(frame, outW, small.data, small.width, small.height, row, col);
  }

  function to8bit({ width, height, data }) {
    // RGBA from the browser to 8-bit RGB as images.to_8bit makes it: transparency flattened onto
    // black when the visible pixels are light, else onto white (Pillow's alpha_composite)
    const rgb = new Uint8Array(width * height * 3);
    let weighted = 0, alphaTotal = 0, opaque = true;
    for (let i = 0; i < width * height; i++) {
      const a = data[4 * i + 3];
      opaque &&= a === 255;
      weighted += a * luma(data[4 * i], data[4 * i + 1], data[4 * i + 2]);
      alphaTotal += a;
    }
    const background = !opaque && weighted > 127 * alphaTotal && alphaTotal > 0 ? 0 : 255;
    for (let i = 0; i < width * height; i++) {
      const a = data[4 * i + 3];
      for (let c = 0; c < 3; c++) {
        const v = data[4 * i + c];
        if (a === 255) rgb[3 * i + c] = v;
        else if (a === 0) rgb[3 * i + c] = background;
        else {
          const mixed = (v * a + background * (255 - a)) * 128 + (0x80 << 7);
          rgb[3 * i + c] = (((mixed >> 8) + mixed) >> 8) >> 7;
        }
      }
    }
    return image(width, height, 3, rgb);
  }

  const luma = (r, g, b) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; // Pillow's RGB to L

  function toGrey(rgb) {
    const grey = new Uint8Array(rgb.width * rgb.height);
    for (let i = 0; i < grey.length; i++) grey[i] = luma(rgb.data[3 * i], rgb.data[3 * i + 1], rgb.data[3 * i + 2]);
    return image(rgb.width, rgb.height, 1, grey);
  }

  function toModelInput(rgba, inputShape, style) {
    // to_model_input: `rgba` is {width, height, data} as a canvas's getImageData gives it; the
    // answer is the model's uint8 input, flat, in the order of `inputShape` ([H, W] or [H, W, C])
    const [outH, outW] = inputShape, channels = inputShape.length === 3 ? inputShape[2] : 1;
    let picture = to8bit(rgba);
    if (channels === 1) picture = toGrey(picture);
    if (style === "plain") return resize(picture, outW, outH, "bilinear").data;
    if (Math.max(picture.width, picture.height) > WORKING_SIZE) {
      picture = scaled(picture, WORKING_SIZE / Math.max(picture.width, picture.height), "bilinear");
    }
    if (style === "digits") return toMnist(picture, outH, outW);
    if (picture.width === outW && picture.height === outH && median32(border(picture.data, outW, outH)) <= 10) {
      return picture.data; // already light on black at the model's size, as Fashion-MNIST draws clothes
    }
    const grey = lightOnDark(image(picture.width, picture.height, 1, Float32Array.from(picture.data)));
    return placeInk(grey, outH, outW, Math.min(outH, outW));
  }

  return { toModelInput };
})();
