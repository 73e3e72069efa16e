// The exported page's answers, made in the browser: pictures converted by convert.js as `imgcls
// predict` converts them, and the model run by ONNX Runtime Web (WebAssembly). Loaded before app.js,
// which then asks this instead of a server's /model and /predict.
//
// A page opened from file:// may not fetch the files beside it, so the model (model.js) and the
// runtime's WebAssembly (ort-wasm.js) come as scripts holding base64; the .wasm is gzipped, which
// also makes it a third of its size. The same loading works on any static host.
"use strict";

window.imgclsBackend = (() => {
  const TOP = 3;
  const { info } = IMGCLS_MODEL;

  const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

  async function gunzip(bytes) {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser cannot unpack the runtime (no DecompressionStream); use a current one");
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  const session = (async () => {
    ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page; one 28x28 picture needs none
    ort.env.wasm.wasmBinary = await gunzip(fromBase64(ORT_WASM.wasm));
    const loader = new Blob([fromBase64(ORT_WASM.mjs)], { type: "text/javascript" });
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(loader) };
    return ort.InferenceSession.create(fromBase64(IMGCLS_MODEL.onnx));
  })();

  // A picture's own pixels, as Pillow reads them: upright (EXIF), no colour management.
  async function pixels(blob) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none",
                                               imageOrientation: "from-image" });
    } catch {
      throw new Error(`${blob.name || "this file"} is not a picture this browser can read`);
    }
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    return context.getImageData(0, 0, canvas.width, canvas.height);
  }

  // The views imgcls.views makes of a converted picture (height, width[, channels]), with their
  // weights: the picture and its mirror; for six, those at a quarter each and, at an eighth each,
  // both moved a pixel diagonally down-right and up-left, the edge reflected into the gap.
  function views(pixels, [height, width, channels = 1], count) {
    const reflect = (i, n) => (i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);
    const view = (move, mirror) => {
      const out = new Uint8Array(pixels.length);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const from = (reflect(y - move, height) * width + reflect((mirror ? width - 1 - x : x) - move, width)) * channels;
          out.set(pixels.subarray(from, from + channels), (y * width + x) * channels);
        }
      }
      return out;
    };
    const moves = count === 6 ? [[0, 1 / 4], [1, 1 / 8], [-1, 1 / 8]] : [[0, 1 / 2]];
    return moves.flatMap(([move, weight]) => [false, true].map((mirror) => ({ pixels: view(move, mirror), weight })));
  }

  // The model's probabilities for a converted picture: averaged over its views with --tta, in one run.
  async function probabilities(model, converted) {
    const shown = info.tta_views ? views(converted, info.input_shape, info.tta_views) : [{ pixels: converted, weight: 1 }];
    const batch = new Uint8Array(converted.length * shown.length);
    shown.forEach((v, i) => batch.set(v.pixels, i * converted.length));
    const input = new ort.Tensor("uint8", batch, [shown.length, ...info.input_shape]);
    const probs = (await model.run({ [model.inputNames[0]]: input }))[model.outputNames[0]].data;
    const classes = info.classes.length;
    return info.classes.map((_, c) => shown.reduce((sum, v, i) => sum + v.weight * probs[i * classes + c], 0));
  }

  return {
    async model() {
      await session;
      return info;
    },
    pixels,
    views,
    async predict(blob) {
      const model = await session;
      const converted = imgclsConvert.toModelInput(await pixels(blob), info.input_shape, info.preprocessing);
      const probs = await probabilities(model, converted);
      const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, TOP);
      return { top: order.map((i) => ({ class: info.classes[i], probability: probs[i] })) };
    },
  };
})();
