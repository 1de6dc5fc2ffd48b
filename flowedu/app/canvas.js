// Draws a flow's frames on an HTML canvas and animates them in the browser.
//
// canvas.py sends every intermediate of one pass once (binary float32 buffers). Here, each
// animation frame draws the cloud at a position p in [0, L]: with p = k + t,
//     point = (1 - t) * points[k] + t * points[k + 1]
// (the same formula as frames.frame_at in Python). Play, pause, scrub and speed never talk
// to the kernel, so the motion runs at the display's frame rate.
//
// The parts, in the order below: frame loading (loadFrames: the model's buffers -> typed
// arrays), drawing (drawFrame: one picture at a position, with captionAt and drawLegend),
// the page-level kernel watch (watchKernel and its banner), and the widget (render: the
// controls, the playback clock and the wiring between them).
//
// For tests and benchmarks the widget's element carries data-version (which frames are
// shown), data-frames (frames drawn), data-playing and data-position, and the page has
// window.__flowedu_frames (frames drawn by all canvases) and window.__flowedu_first_frame_ms
// (performance.now() when the first frame with data was drawn).
//
// If the page loses its kernel (the kernel died, was restarted or culled, or the server went
// away), the controls silently stop working while the picture keeps moving: watchKernel()
// then shows a banner that says so and offers a reload (a reload gets a fresh kernel), and
// sets window.__flowedu_connection to "lost" (it is "ok" before; window.__flowedu_watch says
// what is watched: "comm+kernel" where the widget manager exposes its kernel connection).

const SPEEDS = [0.25, 0.5, 1, 2, 4];
const HOLD_END_MS = 1200; // rest on the last layer before looping
// The autoplay starts once the browser keeps time (see whenTheBrowserKeepsTime).
const KEEPING_TIME = {
  probeMs: 50, // a timer of this long ...
  onTimeMs: 15, // ... that fires at most this late is on time
  probes: 3, // this many on time in a row
  maxWaitMs: 60000, // and after this long it starts anyway
};
const HEAT_RGB = [150, 150, 178]; // densest colour of the density images (white is zero)

function view(buffer, Type) {
  // A typed-array view of a synced Bytes trait (DataView, ArrayBuffer or typed array).
  if (!buffer) return new Type(0);
  const ab = buffer instanceof ArrayBuffer ? buffer : buffer.buffer;
  const offset = buffer instanceof ArrayBuffer ? 0 : buffer.byteOffset;
  const length = buffer.byteLength;
  if (offset % Type.BYTES_PER_ELEMENT !== 0) {
    return new Type(ab.slice(offset, offset + length)); // misaligned: copy
  }
  return new Type(ab, offset, length / Type.BYTES_PER_ELEMENT);
}

const smoothstep = (t) => t * t * (3 - 2 * t);
const inverseSmoothstep = (y) => 0.5 - Math.sin(Math.asin(1 - 2 * y) / 3);

function rgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

const POINT_ALPHA = 215; // of 255: overlapping points stay distinguishable from the grid

function packRgba([r, g, b]) {
  // One pixel as a Uint32 in ImageData's byte order (R, G, B, A) on little-endian machines.
  return ((POINT_ALPHA << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

function hsl([r, g, b]) {
  r /= 255; g /= 255; b /= 255;
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const l = (max + min) / 2;
  const d = max - min;
  if (d === 0) return [0, 0, l];
  const s = d / (1 - Math.abs(2 * l - 1));
  const h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  return [(h * 60 + 360) % 360, s, l];
}

function fromHsl([h, s, l]) {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = l - c / 2;
  const [r, g, b] = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x]
    : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [r, g, b].map((v) => Math.round(255 * (v + m)));
}

function rgba(a, b, t) {
  // From colour a to colour b through saturated hues (blue, violet, red, orange), not
  // through the grey that mixing red, green and blue would pass.
  // Hues are counted from 120 (green) to 480, so the path between blue (205) and orange
  // (390) runs through violet and red whichever way it goes.
  const [ha, sa, la] = hsl(a).map((v, i) => (i === 0 && v < 120 ? v + 360 : v));
  const [hb, sb, lb] = hsl(b).map((v, i) => (i === 0 && v < 120 ? v + 360 : v));
  const h = (ha + (hb - ha) * t) % 360;
  return packRgba(fromHsl([h, sa + (sb - sa) * t, la + (lb - la) * t]));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function heatImages(meta, bytes) {
  // One small canvas per layer, coloured white -> HEAT_RGB by density; drawn scaled up.
  const s = meta.heatmap_size || 0;
  const all = view(bytes, Uint8Array);
  if (!s || all.length !== meta.n_frames * s * s) return [];
  const images = [];
  for (let k = 0; k < meta.n_frames; k++) {
    const c = document.createElement("canvas");
    c.width = c.height = s;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(s, s);
    for (let i = 0; i < s * s; i++) {
      const v = all[k * s * s + i] / 255;
      img.data[4 * i] = 255 + (HEAT_RGB[0] - 255) * v;
      img.data[4 * i + 1] = 255 + (HEAT_RGB[1] - 255) * v;
      img.data[4 * i + 2] = 255 + (HEAT_RGB[2] - 255) * v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    images.push(c);
  }
  return images;
}

// ------------------------------------------------------------------ frame loading

function loadFrames(model) {
  // The frames of one setting, from the model's binary buffers and their meta: null when
  // there are none yet, or (with a warning) when the buffers do not match their shapes.
  const meta = model.get("meta");
  if (!meta || !meta.n_frames) return null;
  const F = meta.n_frames;
  const n = meta.n_points;
  const G = meta.grid_lines * meta.grid_samples;
  const pts = view(model.get("points"), Float32Array);
  const grid = view(model.get("grid"), Float32Array);
  const col = view(model.get("colours"), Uint8Array);
  if (pts.length !== F * n * 2 || grid.length !== F * G * 2 || col.length !== (F - 1) * n) {
    console.warn("flowedu: frame buffers do not match their shapes; not drawn", meta);
    return null;
  }
  return {
    meta, F, L: F - 1, n, G, pts, grid, col,
    heat: heatImages(meta, model.get("heatmaps")),
    start: rgb(meta.start_color),
    end: rgb(meta.end_color),
    palette: meta.palette,
    paletteRgba: meta.palette.map((hex) => packRgba(rgb(hex))),
  };
}

// ------------------------------------------------------------------ drawing

function captionAt(f, pos, k, t) {
  // What the picture shows at position pos = k + t.
  if (pos <= 0) return f.meta.start_label;
  if (pos >= f.L) return f.meta.end_label;
  if (t === 0) return `after layer ${k} of ${f.L}: ${f.meta.layer_names[k - 1]}`;
  return `layer ${k + 1} of ${f.L}: ${f.meta.layer_names[k]}`;
}

function drawFrame(ctx, f, o) {
  // Draw the frames f at position o.pos (in layers) on the 2D context ctx: the density, the
  // axes, the grid and the points at (1 - t) points[k] + t points[k + 1], the caption and,
  // when coloured by log|det J|, its legend. o.dots is an off-screen pixel layer.
  const W = ctx.canvas.width;
  const dpr = W / o.size;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, W, W);
  if (!f) {
    ctx.fillStyle = "#666";
    ctx.font = `${16 * dpr}px system-ui, sans-serif`;
    ctx.fillText("loading the flow\u2026", 20 * dpr, 40 * dpr);
    return;
  }
  const L = f.L;
  const k = L === 0 ? 0 : Math.min(Math.floor(o.pos), L - 1);
  const t = L === 0 ? 0 : o.pos - k;
  const half = f.meta.half;
  const m = 8 * dpr; // margin around the plotting square
  const S = W - 2 * m;
  const scale = S / (2 * half);
  const X = (x) => m + (x + half) * scale;
  const Y = (y) => m + (half - y) * scale;

  ctx.save();
  ctx.beginPath();
  ctx.rect(m, m, S, S);
  ctx.clip(); // points and lines that leave the view are cut at its frame

  if (o.showHeatmap && f.heat.length === f.F) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(f.heat[k], m, m, S, S);
    if (t > 0 && L > 0) {
      ctx.globalAlpha = t; // cross-fade to the next layer's density
      ctx.drawImage(f.heat[k + 1], m, m, S, S);
      ctx.globalAlpha = 1;
    }
  }

  // The axes x = 0 and y = 0, and the frame.
  ctx.lineWidth = dpr;
  ctx.strokeStyle = "#d0d0d0";
  ctx.beginPath();
  ctx.moveTo(X(-half), Y(0));
  ctx.lineTo(X(half), Y(0));
  ctx.moveTo(X(0), Y(-half));
  ctx.lineTo(X(0), Y(half));
  ctx.stroke();
  ctx.strokeRect(m, m, S, S);

  const a = 1 - t;
  if (o.showGrid && f.G > 0) {
    const lines = f.meta.grid_lines;
    const samples = f.meta.grid_samples;
    const g0 = k * f.G * 2;
    const g1 = L === 0 ? g0 : (k + 1) * f.G * 2;
    const g = f.grid;
    ctx.strokeStyle = f.meta.grid_color;
    ctx.globalAlpha = 0.45;
    ctx.lineWidth = 1.2 * dpr;
    ctx.beginPath();
    for (let line = 0; line < lines; line++) {
      for (let j = 0; j < samples; j++) {
        const i = 2 * (line * samples + j);
        const x = X(a * g[g0 + i] + t * g[g1 + i]);
        const y = Y(a * g[g0 + i + 1] + t * g[g1 + i + 1]);
        if (j === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
    }
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  // The points are written straight into a pixel buffer, then drawn over the rest in one
  // go: with a software-rendered canvas this kept 60 frames/s where a path of thousands
  // of little squares, rasterised anew each frame, dropped to 20-50 on a busy machine.
  const n = f.n;
  const p0 = k * n * 2;
  const p1 = L === 0 ? p0 : (k + 1) * n * 2;
  const p = f.pts;
  const side = Math.max(1, Math.round((n > 4000 ? 2 : 3) * dpr)); // pixels per point's square
  const lo = Math.ceil(m);
  const hi = Math.floor(m + S) - side;
  const byLogdet = o.colourBy === "logdet" && L > 0;
  const colours = byLogdet ? f.paletteRgba : [rgba(f.start, f.end, L ? o.pos / L : 0)];
  const dots = o.dots;
  dots.px.fill(0);
  const c = f.col;
  const cOff = k * n;
  for (let i = 0; i < n; i++) {
    const x = Math.round(X(a * p[p0 + 2 * i] + t * p[p1 + 2 * i]) - side / 2);
    const y = Math.round(Y(a * p[p0 + 2 * i + 1] + t * p[p1 + 2 * i + 1]) - side / 2);
    if (x < lo || x > hi || y < lo || y > hi) continue; // outside the view
    const colour = colours[byLogdet ? c[cOff + i] : 0];
    for (let dy = 0; dy < side; dy++) {
      const row = (y + dy) * W + x;
      for (let dx = 0; dx < side; dx++) dots.px[row + dx] = colour;
    }
  }
  dots.ctx.putImageData(dots.image, 0, 0);
  ctx.drawImage(dots.canvas, 0, 0);
  ctx.globalAlpha = 1;
  ctx.restore();

  // Caption: what the picture shows at this position.
  ctx.textBaseline = "top";
  const text = captionAt(f, o.pos, k, t);
  let fontSize = 16;
  ctx.font = `600 ${fontSize * dpr}px system-ui, sans-serif`;
  let tw = ctx.measureText(text).width;
  if (tw > S - 24 * dpr) {
    fontSize = Math.max(10, (fontSize * (S - 24 * dpr)) / tw); // shrink to fit the width
    ctx.font = `600 ${fontSize * dpr}px system-ui, sans-serif`;
    tw = ctx.measureText(text).width;
  }
  ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
  ctx.fillRect(m + 4 * dpr, m + 4 * dpr, tw + 12 * dpr, (fontSize + 10) * dpr);
  ctx.fillStyle = "#222";
  ctx.fillText(text, m + 10 * dpr, m + 9 * dpr);

  if (byLogdet) drawLegend(ctx, f, dpr, m, S);
}

function drawLegend(ctx, f, dpr, m, S) {
  // A bar of the log|det J| colours: how much this layer changes the area near a point.
  const s = f.meta.logdet_scale;
  const factor = Math.exp(s).toFixed(s < 0.7 ? 2 : 1);
  const w = 22 * dpr;
  const bar = f.palette.length * w;
  const title = "this layer changes the area around each point";
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  const boxW = Math.max(bar, ctx.measureText(title).width) + 16 * dpr;
  const x0 = m + S - 8 * dpr - boxW / 2 - bar / 2;
  const y0 = m + S - 44 * dpr;
  ctx.fillStyle = "rgba(255, 255, 255, 0.88)";
  ctx.fillRect(x0 + bar / 2 - boxW / 2, y0 - 22 * dpr, boxW, 58 * dpr);
  f.palette.forEach((colour, i) => {
    ctx.fillStyle = colour;
    ctx.fillRect(x0 + i * w, y0, w, 14 * dpr);
  });
  ctx.fillStyle = "#222";
  ctx.textBaseline = "top";
  ctx.textAlign = "center";
  ctx.fillText(title, x0 + bar / 2, y0 - 17 * dpr);
  ctx.textAlign = "left";
  ctx.fillText(`\u00F7${factor} squeezed`, x0, y0 + 18 * dpr);
  ctx.textAlign = "right";
  ctx.fillText(`\u00D7${factor} spread`, x0 + bar, y0 + 18 * dpr);
  ctx.textAlign = "left";
}

// ------------------------------------------------------------------ page-level kernel watch

const LOST_STATUSES = new Set(["restarting", "autorestarting", "dead"]);
const RECONNECT_GRACE_MS = 8000; // a websocket that is still reconnecting after this is lost

// In Voila a reload gets a fresh kernel; in JupyterLab or Notebook, running the cell again
// does (a reload there would not), and the message stays inside the widget.
const IN_VOILA = () => "voila_finish" in window || "voila_heartbeat" in window;

function showConnectionLost(why, final = true, host = null) {
  // One banner per page, however many canvases: fixed at the top, above everything.
  // final = false: the websocket may still come back (see hideConnectionLost).
  window.__flowedu_connection = "lost";
  const voila = IN_VOILA() || !host;
  const parent = voila ? document.body : host;
  const old = parent.querySelector(":scope > .flowedu-lost");
  if (old && (old.dataset.final === "1" || !final)) return;
  if (old) old.remove();
  window.__flowedu_connection_reason = why; // the reason shown
  const banner = el("div", voila ? "flowedu-lost" : "flowedu-lost flowedu-lost-inline");
  banner.setAttribute("role", "alert");
  banner.dataset.final = final ? "1" : "0";
  const fix = voila
    ? "Reload the page to start again with a fresh kernel."
    : "Run the dashboard's cell again.";
  const text = el(
    "span",
    "",
    `\u26A0 This page lost its connection to the Python kernel (${why}). The controls ` +
      `no longer respond. ${fix}`
  );
  banner.append(text);
  if (voila) {
    const button = el("button", "flowedu-reload", "Reload the page");
    button.addEventListener("click", () => window.location.reload());
    banner.append(button);
  }
  if (voila) parent.appendChild(banner);
  else parent.prepend(banner);
}

function hideConnectionLost() {
  // The websocket came back to the same kernel (not restarted): its widgets still work.
  const banners = [...document.querySelectorAll(".flowedu-lost")];
  if (banners.length === 0 || banners.some((b) => b.dataset.final === "1")) return;
  banners.forEach((b) => b.remove());
  window.__flowedu_connection = "ok";
}

function watchKernel(model, host) {
  // Listen for the loss of the kernel behind the widgets; return a function that stops.
  // model.widget_manager.kernel is the kernel connection of Voila's and JupyterLab's widget
  // managers (@jupyterlab/services); elsewhere only the widgets' own comm is watched.
  if (window.__flowedu_connection === undefined) window.__flowedu_connection = "ok";
  const stops = [];
  // The widget manager sets comm_live to false on every model when the kernel restarts or
  // the comm closes; it triggers "comm_live_update" (true is set only before rendering).
  const lost = (why, final = true) => showConnectionLost(why, final, host);
  const onComm = () => lost("the kernel stopped or restarted");
  model.on("comm_live_update", onComm);
  stops.push(() => model.off("comm_live_update", onComm));
  const kernel = model.widget_manager && model.widget_manager.kernel;
  window.__flowedu_watch = "comm";
  if (kernel && kernel.statusChanged && kernel.connectionStatusChanged) {
    window.__flowedu_watch = "comm+kernel";
    let timer = 0;
    const onStatus = (_, status) => {
      if (LOST_STATUSES.has(status)) lost(`the kernel is ${status}`);
    };
    const onConnection = (_, status) => {
      clearTimeout(timer);
      if (status === "disconnected") lost("disconnected from the server");
      else if (status === "connected") hideConnectionLost();
      else if (status === "connecting") {
        timer = setTimeout(
          () => lost("cannot reach the server", false),
          RECONNECT_GRACE_MS
        );
      }
    };
    kernel.statusChanged.connect(onStatus);
    kernel.connectionStatusChanged.connect(onConnection);
    stops.push(() => {
      clearTimeout(timer);
      kernel.statusChanged.disconnect(onStatus);
      kernel.connectionStatusChanged.disconnect(onConnection);
    });
  }
  return () => stops.forEach((stop) => stop());
}

function whenTheBrowserKeepsTime(start, o = KEEPING_TIME) {
  // Call start() once timers fire on time: o.probes timers of o.probeMs in a row, each at
  // most o.onTimeMs late (or after o.maxWaitMs at most). A browser still busy, with this
  // page's scripts or other tabs, would show the animation at a few frames a second and
  // slow down whatever keeps it busy: thirty pages opened at once on two cores were
  // interactive sooner when those already up waited. Returns a function that cancels it.
  const began = performance.now();
  let onTime = 0;
  let timer = 0;
  const probe = () => {
    const due = performance.now() + o.probeMs;
    timer = setTimeout(() => {
      onTime = performance.now() - due <= o.onTimeMs ? onTime + 1 : 0;
      if (onTime >= o.probes || performance.now() - began > o.maxWaitMs) start();
      else probe();
    }, o.probeMs);
  };
  probe();
  return () => clearTimeout(timer);
}

// ------------------------------------------------------------------ the widget

function render({ model, el: host }) {
  host.classList.add("flowedu-canvas-widget");
  const stage = el("div", "flowedu-stage");
  const canvas = el("canvas", "flowedu-canvas");
  canvas.tabIndex = 0; // focus it to use the keys: space plays / pauses, arrows step
  const bar = el("div", "flowedu-transport");
  const playButton = el("button", "flowedu-play", "\u25B6 Play");
  const slider = el("input", "flowedu-scrub");
  Object.assign(slider, { type: "range", min: 0, max: 1, step: "any", value: 0 });
  slider.setAttribute("aria-label", "position in the flow, in layers");
  const layerLabel = el("span", "flowedu-layer-label", "");
  const speed = el("select", "flowedu-speed");
  speed.setAttribute("aria-label", "speed");
  for (const s of SPEEDS) {
    const option = el("option", "", `${s}\u00D7`);
    option.value = String(s);
    if (s === 1) option.selected = true;
    speed.appendChild(option);
  }
  const loopLabel = el("label", "flowedu-loop");
  const loopBox = el("input");
  loopBox.type = "checkbox";
  // Off at first: opened, the page plays the flow through once and rests on the result
  // (Play replays it). A page that loops on while nobody watches keeps a core busy for
  // nothing; thirty looping on one machine slowed the pages still loading by a third.
  loopBox.checked = false;
  loopLabel.append(loopBox, " loop");
  bar.append(playButton, slider, layerLabel, speed, loopLabel);
  stage.append(canvas, bar);
  host.appendChild(stage);

  const ctx = canvas.getContext("2d");
  const state = {
    f: null, // the frames now shown
    pos: 0, // position in layers, 0..L
    clock: 0, // playback time in layers; pos eases within each layer
    playing: false,
    holdUntil: 0,
    last: null,
    dirty: true,
    drawn: 0,
    autoplayed: false,
    readoutAt: 0,
  };
  // For the benchmarks: frames drawn, and milliseconds of play spent moving (the rest at the
  // end of a pass draws nothing, so it must not count against the frame rate).
  if (window.__flowedu_frames === undefined) window.__flowedu_frames = 0;
  if (window.__flowedu_moving_ms === undefined) window.__flowedu_moving_ms = 0;

  let layer = null;
  function pixelLayer(W) {
    // An off-screen canvas the size of the picture, with a pixel buffer for the points.
    if (!layer || layer.canvas.width !== W) {
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = W;
      const ctx = canvas.getContext("2d");
      const image = ctx.createImageData(W, W);
      layer = { canvas, ctx, image, px: new Uint32Array(image.data.buffer) };
    }
    return layer;
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const size = model.get("size");
    canvas.style.width = canvas.style.height = `${size}px`;
    canvas.width = canvas.height = Math.round(size * dpr);
    bar.style.width = `${size}px`;
    markDirty();
  }

  let cancelAutoplay = () => {};
  function setPlaying(on) {
    cancelAutoplay(); // a visitor's own choice, or the autoplay itself: it is done
    const f = state.f;
    if (on && f && state.pos >= f.L) state.clock = state.pos = 0; // replay from the start
    state.playing = on && !!f && f.L > 0;
    state.last = null;
    state.holdUntil = 0;
    playButton.textContent = state.playing ? "\u275A\u275A Pause" : "\u25B6 Play";
    host.dataset.playing = state.playing ? "1" : "0";
    markDirty();
  }

  function setPosition(p) {
    const f = state.f;
    if (!f) return;
    state.pos = Math.max(0, Math.min(f.L, p));
    const k = Math.floor(state.pos);
    state.clock = k + inverseSmoothstep(state.pos - k);
    state.holdUntil = 0;
    markDirty();
  }

  function load() {
    const f = loadFrames(model, state.f);
    if (!f) return;
    const sameSetting =
      state.f &&
      state.f.meta.dataset === f.meta.dataset &&
      state.f.meta.direction === f.meta.direction &&
      state.f.F === f.F;
    state.f = f;
    slider.max = String(f.L);
    if (!sameSetting) setPosition(0);
    host.dataset.version = String(model.get("version"));
    if (!state.autoplayed && model.get("autoplay")) {
      cancelAutoplay = whenTheBrowserKeepsTime(() => setPlaying(true));
    }
    state.autoplayed = true;
    markDirty();
  }

  function advance(now) {
    const f = state.f;
    if (state.last === null) state.last = now;
    const dt = (now - state.last) / 1000;
    state.last = now;
    if (state.holdUntil) {
      if (now < state.holdUntil) return;
      state.holdUntil = 0;
      if (!loopBox.checked) return setPlaying(false);
      state.clock = 0; // loop: back to the start
    } else {
      window.__flowedu_moving_ms += 1000 * dt;
      const layersPerSecond = Number(speed.value) / model.get("seconds_per_layer");
      state.clock = Math.min(f.L, state.clock + dt * layersPerSecond);
      if (state.clock >= f.L) state.holdUntil = now + HOLD_END_MS;
    }
    const k = Math.min(Math.floor(state.clock), f.L - 1);
    state.pos = k + smoothstep(state.clock - k);
    markDirty();
  }

  function draw() {
    const begin = performance.now();
    paint();
    // Milliseconds of JavaScript per frame, smoothed; the benchmark reports it.
    state.drawMs = state.drawMs === undefined ? performance.now() - begin
      : 0.9 * state.drawMs + 0.1 * (performance.now() - begin);
    readouts(begin);
  }

  function readouts(now) {
    // Writing to the page makes the browser restyle it, and a Voila page is a large
    // JupyterLab document: done every frame, that cost more than the drawing. So while
    // playing the readouts change about 10 times a second; when paused, at once.
    if (state.playing && now - state.readoutAt < 100) return;
    state.readoutAt = now;
    const f = state.f;
    if (f) layerLabel.textContent = `layer ${state.pos.toFixed(1)} / ${f.L}`;
    if (f && document.activeElement !== slider) slider.value = String(state.pos);
    host.dataset.position = state.pos.toFixed(3);
    host.dataset.frames = String(state.drawn);
    host.dataset.drawMs = state.drawMs.toFixed(2);
  }

  function paint() {
    drawFrame(ctx, state.f, {
      pos: state.pos,
      size: model.get("size"),
      showGrid: model.get("show_grid"),
      showHeatmap: model.get("show_heatmap"),
      colourBy: model.get("colour_by"),
      dots: pixelLayer(canvas.width),
    });
    if (!state.f) return;
    state.drawn += 1;
    window.__flowedu_frames += 1;
    if (window.__flowedu_first_frame_ms === undefined) {
      window.__flowedu_first_frame_ms = performance.now();
    }
  }

  // Frames are asked for only while something changes: playing, or a redraw pending. An
  // animation-frame loop that runs on while nothing moves still makes the browser compose
  // the page 60 times a second (a tenth of a core per paused page, measured).
  let raf = 0;
  function markDirty() {
    state.dirty = true;
    if (!raf) raf = requestAnimationFrame(tick);
  }

  function tick(now) {
    raf = 0;
    if (state.playing && state.f) advance(now);
    if (state.dirty) {
      state.dirty = false;
      draw();
    }
    if (state.playing && !raf) raf = requestAnimationFrame(tick);
  }

  playButton.addEventListener("click", () => setPlaying(!state.playing));
  slider.addEventListener("input", () => {
    setPlaying(false);
    setPosition(Number(slider.value));
  });
  canvas.addEventListener("keydown", (event) => {
    if (!state.f) return;
    if (event.key === " ") setPlaying(!state.playing);
    else if (event.key === "ArrowRight") setPosition(Math.floor(state.pos) + 1);
    else if (event.key === "ArrowLeft") setPosition(Math.ceil(state.pos) - 1);
    else return;
    if (event.key !== " ") setPlaying(false);
    event.preventDefault();
  });
  const redraw = () => markDirty();
  model.on("change:version", load);
  model.on("change:show_grid", redraw);
  model.on("change:show_heatmap", redraw);
  model.on("change:colour_by", redraw);
  model.on("change:size", resize);

  host.dataset.playing = "0";
  resize();
  load();
  markDirty();
  const stopWatching = watchKernel(model, host);
  return () => {
    cancelAnimationFrame(raf);
    cancelAutoplay();
    stopWatching();
    model.off("change:version", load);
    model.off("change:show_grid", redraw);
    model.off("change:show_heatmap", redraw);
    model.off("change:colour_by", redraw);
    model.off("change:size", resize);
  };
}

export { whenTheBrowserKeepsTime }; // for the tests
export default { render };
