// The training loss (mean negative log-likelihood, nats) against the step, with the data's
// true entropy H as a dashed line: the loss on fresh data can approach H but never beat it.

function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.className = "flowedu-loss";
  el.appendChild(canvas);
  const ctx = canvas.getContext("2d");

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = model.get("width");
    const h = model.get("height");
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);

    const steps = model.get("steps");
    const losses = model.get("losses");
    const floor = model.get("floor");
    const total = Math.max(1, model.get("total_steps"));
    const left = 44;
    const right = w - 8;
    const top = 10;
    const bottom = h - 24;

    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#555";
    if (!losses.length) {
      ctx.textAlign = "center";
      ctx.fillText("the loss curve appears here while training", w / 2, h / 2);
      return;
    }
    const finite = losses.filter(Number.isFinite);
    let lo = Math.min(...finite, floor ?? Infinity);
    let hi = Math.max(...finite);
    if (floor !== null) hi = Math.min(hi, floor + 4); // keep the interesting part visible
    if (hi - lo < 0.2) hi = lo + 0.2;
    lo -= 0.05 * (hi - lo);
    const X = (s) => left + ((right - left) * s) / total;
    const Y = (v) => bottom - ((bottom - top) * (Math.min(v, hi) - lo)) / (hi - lo);

    // Axes and labels.
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, top);
    ctx.lineTo(left, bottom);
    ctx.lineTo(right, bottom);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(hi.toFixed(1), left - 4, Y(hi));
    ctx.fillText(lo.toFixed(1), left - 4, Y(lo));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(`step (of ${total})`, (left + right) / 2, bottom + 6);

    if (floor !== null) {
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = "#333";
      ctx.beginPath();
      ctx.moveTo(left, Y(floor));
      ctx.lineTo(right, Y(floor));
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      ctx.fillStyle = "#333";
      ctx.fillText(`true entropy H = ${floor.toFixed(2)}`, right, Y(floor) - 2);
    }

    ctx.strokeStyle = model.get("color");
    ctx.lineWidth = 2;
    ctx.beginPath();
    steps.forEach((s, i) => (i ? ctx.lineTo(X(s), Y(losses[i])) : ctx.moveTo(X(s), Y(losses[i]))));
    ctx.stroke();
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillStyle = model.get("color");
    ctx.fillText(`loss ${losses[losses.length - 1].toFixed(3)}`, left + 6, top);
    ctx.textAlign = "right";
    ctx.fillStyle = "#555";
    ctx.fillText(model.get("label"), right, top);
  }

  for (const name of ["steps", "losses", "floor", "total_steps", "label", "width", "height"]) {
    model.on(`change:${name}`, draw);
  }
  draw();
}

export default { render };
