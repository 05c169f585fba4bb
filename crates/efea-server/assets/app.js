// efea's page: send a photo or webcam frames to POST /v1/predict, draw the faces it finds.
'use strict';

// The colours of efea-infer's CLASS_COLORS (Okabe-Ito), in class order.
const COLORS = ['#d55e00', '#009e73', '#cc79a7', '#f0e442', '#56b4e9', '#e69f00', '#0072b2', '#aaaaaa'];

const $ = (id) => document.getElementById(id);
const canvas = $('canvas');
const ctx = canvas.getContext('2d');
const video = $('video');

let classes = [];
let webcam = null; // { stream, timer } while the webcam runs
let busy = false;
// The last answer and the palette, for whoever inspects the page (the browser test does).
window.efea = { last: null, classes, colors: COLORS };

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  const box = $('error');
  box.textContent = message || '';
  box.hidden = !message;
}

function colorOf(label) {
  const index = classes.indexOf(label);
  return COLORS[(index < 0 ? 0 : index) % COLORS.length];
}

async function loadModel() {
  try {
    const response = await fetch('/v1/model');
    const model = await response.json();
    classes = model.classes;
    window.efea.classes = classes;
    const preset = model.preset ? ` · preset ${model.preset}` : '';
    const face = model.face ? ` · faces by ${model.face.detector}${model.face.align ? ', aligned' : ''}` : '';
    $('model').textContent =
      `model ${model.name} (${model.architecture}) · ${classes.join(', ')} · ` +
      `${model.input_size}×${model.input_size} input${preset}${face}`;
    $('model').title = model.description || '';
  } catch (error) {
    $('model').textContent = 'model information unavailable';
  }
}

async function predict(blob) {
  const url = '/v1/predict' + ($('cam').checked ? '?cam=true' : '');
  const response = await fetch(url, {
    method: 'POST',
    body: blob,
    // The browser guesses a file's type from its name; the server reads the bytes, so only an
    // image type is passed on (a misnamed file is judged by what it holds).
    headers: {
      'Content-Type': blob.type.startsWith('image/') ? blob.type : 'application/octet-stream',
    },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error || `the server answered ${response.status}`);
  }
  return body;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error('could not read a Grad-CAM picture'));
    image.src = src;
  });
}

// Draws `source` at the answer's size, then the Grad-CAM pictures, boxes and labels.
async function render(source, result) {
  canvas.width = result.width;
  canvas.height = result.height;
  ctx.drawImage(source, 0, 0, result.width, result.height);

  const cams = await Promise.all(
    result.faces.map((face) => (face.cam ? loadImage(`data:image/png;base64,${face.cam}`) : null)),
  );
  cams.forEach((cam, i) => {
    if (!cam) return;
    const crop = result.faces[i].crop;
    ctx.globalAlpha = 0.9;
    ctx.drawImage(cam, crop.x, crop.y, crop.width, crop.height);
    ctx.globalAlpha = 1;
  });

  const scale = Math.max(1, Math.min(result.width, result.height) / 500);
  result.faces.forEach((face) => {
    const box = face.box;
    const color = colorOf(face.label);
    const line = Math.max(2, Math.round(box.width / 40));
    ctx.strokeStyle = color;
    ctx.lineWidth = line;
    // Outside the box, so the face stays uncovered.
    ctx.strokeRect(box.x - line / 2, box.y - line / 2, box.width + line, box.height + line);

    const percent = Math.round(100 * face.probabilities[face.label]);
    const text = `${face.label} ${percent}%`;
    const size = Math.round(Math.max(12, Math.min(28, box.width / 4)) * Math.min(scale, 1.5));
    ctx.font = `bold ${size}px system-ui, sans-serif`;
    const width = ctx.measureText(text).width + 8;
    const top = box.y - line - size - 6 >= 0 ? box.y - line - size - 6 : box.y + line;
    ctx.fillStyle = color;
    ctx.fillRect(box.x - line, top, width, size + 6);
    ctx.fillStyle = '#101418';
    ctx.textBaseline = 'top';
    ctx.fillText(text, box.x - line + 4, top + 3);
  });
  canvas.dataset.faces = String(result.faces.length);
  window.efea.last = result;
  renderFaces(result.faces);
  const t = result.timing;
  $('status').textContent =
    `${result.faces.length} face${result.faces.length === 1 ? '' : 's'} in ${Math.round(result.elapsed_ms)} ms ` +
    `(decode ${t.decode_ms.toFixed(0)}, detection ${t.detect_ms.toFixed(0)}, ` +
    `classification ${t.classify_ms.toFixed(0)}${t.cam_ms ? `, Grad-CAM ${t.cam_ms.toFixed(0)}` : ''} ms)`;
}

// One card per face: its label and a bar per class.
function renderFaces(faces) {
  const list = $('faces');
  list.replaceChildren();
  faces.forEach((face, i) => {
    const card = document.createElement('article');
    card.className = 'face';
    card.style.setProperty('--color', colorOf(face.label));
    const title = document.createElement('h2');
    title.textContent = `Face ${i + 1}: ${face.label}`;
    card.append(title);
    for (const [name, p] of Object.entries(face.probabilities)) {
      const row = document.createElement('div');
      row.className = 'bar';
      const label = document.createElement('span');
      label.textContent = name;
      const track = document.createElement('span');
      track.className = 'track';
      const fill = document.createElement('span');
      fill.className = 'fill';
      fill.style.display = 'block';
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      fill.style.background = colorOf(name);
      track.append(fill);
      const value = document.createElement('span');
      value.className = 'value';
      value.textContent = `${(100 * p).toFixed(1)}%`;
      row.append(label, track, value);
      card.append(row);
    }
    list.append(card);
  });
}

async function handleFile(file) {
  if (!file) return;
  stopWebcam();
  showError('');
  setState('busy');
  $('status').textContent = `analysing ${file.name}…`;
  try {
    const result = await predict(file);
    // The server answers in upright coordinates (EXIF orientation applied); so does this.
    const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    await render(bitmap, result);
    setState('done');
  } catch (error) {
    showError(error.message);
    $('status').textContent = '';
    setState('error');
  }
}

// A frame every 1/fps s; a frame is skipped while the previous one is still being analysed,
// so a slow server is never sent more than one frame at a time.
async function sendFrame() {
  if (busy || !webcam || video.videoWidth === 0) return;
  busy = true;
  const frame = document.createElement('canvas');
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext('2d').drawImage(video, 0, 0);
  try {
    const blob = await new Promise((resolve) => frame.toBlob(resolve, 'image/jpeg', 0.85));
    const result = await predict(blob);
    if (webcam) {
      await render(frame, result);
      showError('');
      setState('done');
    }
  } catch (error) {
    showError(error.message);
  } finally {
    busy = false;
  }
}

async function startWebcam() {
  showError('');
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    video.srcObject = stream;
    await video.play();
    const fps = Number($('fps').value);
    webcam = { stream, timer: setInterval(sendFrame, 1000 / fps) };
    $('webcam').textContent = 'Stop webcam';
    $('webcam').classList.add('on');
  } catch (error) {
    showError(`webcam unavailable: ${error.message}`);
  }
}

function stopWebcam() {
  if (!webcam) return;
  clearInterval(webcam.timer);
  webcam.stream.getTracks().forEach((track) => track.stop());
  webcam = null;
  $('webcam').textContent = 'Start webcam';
  $('webcam').classList.remove('on');
}

$('file').addEventListener('change', (event) => handleFile(event.target.files[0]));
$('webcam').addEventListener('click', () => (webcam ? stopWebcam() : startWebcam()));
$('fps').addEventListener('change', () => {
  if (webcam) {
    stopWebcam();
    startWebcam();
  }
});
const drop = $('drop');
drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  handleFile(event.dataTransfer.files[0]);
});

loadModel();
