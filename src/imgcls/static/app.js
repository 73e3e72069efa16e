// The drawing page: draw (single-channel models) or upload an image, and show the top three classes.
// White strokes on black: already MNIST's look, so the preprocessing only has to fit them.
"use strict";

// A service started with --api-key is opened as http://host:port/#key=KEY: the key stays in the page
// (a fragment is never sent to the server or to other sites) and goes with each request.
const KEY_HEADER = new URLSearchParams(location.hash.slice(1)).has("key")
  ? { "X-API-Key": new URLSearchParams(location.hash.slice(1)).get("key") } : {};

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const bars = document.getElementById("bars");
const status = document.getElementById("status");
let canDraw = false;
let drawn = false;
let request = 0; // only the latest answer is shown

// Where answers come from: this server's /model and /predict, unless the page brings its own model
// (the page of `imgcls export --format web` sets window.imgclsBackend and runs it in the browser).
const backend = window.imgclsBackend || {
  async model() {
    return (await fetch("/model", { headers: KEY_HEADER })).json();
  },
  async predict(blob, name) {
    const form = new FormData();
    form.append("file", blob, name);
    const response = await fetch("/predict?top_k=3", { method: "POST", body: form, headers: KEY_HEADER });
    const answer = await response.json();
    if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : response.statusText);
    return answer;
  },
};

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
  request++; // an answer still on its way is for the old picture
  bars.replaceChildren();
  showStatus(canDraw ? "Nothing to classify yet." : "Upload or drop an image to classify it.");
}

function showStatus(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showTop(top) {
  bars.replaceChildren(...top.map(({ class: name, probability }) => {
    const item = document.createElement("li");
    item.className = "bar";
    item.dataset.probability = probability;
    item.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
    item.querySelector(".label").textContent = name;
    item.querySelector(".label").title = name;
    item.querySelector(".fill").style.width = `${(probability * 100).toFixed(1)}%`;
    item.querySelector(".pct").textContent = `${(probability * 100).toFixed(1)}%`;
    return item;
  }));
  showStatus("");
}

async function classify(blob, name) {
  const id = ++request;
  showStatus("Classifying…");
  try {
    const answer = await backend.predict(blob, name);
    if (id === request) showTop(answer.top);
  } catch (error) {
    if (id === request) showStatus(`Could not classify: ${error.message}`, true);
  }
}

function classifyPad() {
  if (drawn) pad.toBlob((blob) => classify(blob, "drawing.png"), "image/png");
}

// Drawing with pointer events: mouse, pen and touch alike.
function point(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
}

let last = null;
pad.addEventListener("pointerdown", (event) => {
  if (!canDraw) return;
  pad.setPointerCapture(event.pointerId);
  last = point(event);
  stroke(last, last);
});
pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) {
    const next = point(e);
    stroke(last, next);
    last = next;
  }
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!last) return;
    last = null;
    classifyPad();
  });
}

function stroke(from, to) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = Number(pad.dataset.pen) || pad.width / 13; // data-pen: for scripts that vary the pen
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...from);
  ctx.lineTo(...to);
  ctx.stroke();
  drawn = true;
}

// Uploads: the original file is classified; the canvas shows a preview of it.
async function useFile(file) {
  if (!file) return;
  clearPad();
  try {
    const image = await createImageBitmap(file);
    const scale = Math.min(pad.width / image.width, pad.height / image.height);
    const w = image.width * scale, h = image.height * scale;
    ctx.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch {
    // No preview for formats the browser cannot show (e.g. TIFF); the server may still read them.
  }
  classify(file, file.name);
}

document.getElementById("upload").addEventListener("change", (event) => {
  useFile(event.target.files[0]);
  event.target.value = "";
});
document.getElementById("clear").addEventListener("click", clearPad);

let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  if (dragDepth++ === 0) document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  if (--dragDepth === 0) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  useFile(event.dataTransfer.files[0]);
});

// The model decides what the page offers: drawing only makes sense for single-channel inputs.
async function start() {
  try {
    const model = await backend.model();
    const shape = model.input_shape;
    canDraw = shape.length === 2 || shape[2] === 1;
    // Answers averaged over test-time views (--tta) are as accurate as the run's figure with them
    const views = model.tta_views && model.metrics && typeof model.metrics.test_accuracy_tta === "number";
    const accuracy = model.metrics && model.metrics[views ? "test_accuracy_tta" : "test_accuracy"];
    document.getElementById("model").textContent = [
      `${model.name} on ${model.dataset || "an unknown dataset"}`,
      `${model.classes.length} classes`,
      `input ${shape.join("×")}`,
      ...(typeof accuracy === "number"
        ? [`test accuracy ${(accuracy * 100).toFixed(1)}%${views ? ` with ${model.tta_views} views` : ""}`] : []),
    ].join(" · ");
    document.getElementById("hint").textContent = canDraw
      ? "Draw with the mouse or a finger, or drop an image anywhere."
      : "This model takes colour pictures: upload or drop one.";
    document.getElementById("stage").classList.toggle("upload-only", !canDraw);
    document.body.dataset.ready = "true";
  } catch (error) {
    showStatus(`Cannot reach the model: ${error.message}`, true);
  }
  clearPad();
}

start();
