// A small line chart on a <canvas>: the last N values of one series, its scale, and
// its latest value. The canvas is an image to assistive technology; the figure's
// caption carries the same latest value as text.

const POINTS = 90;

export class LineChart {
  constructor(canvas, { format = (v) => String(v), color = '#0b5cad' } = {}) {
    this.canvas = canvas;
    this.format = format;
    this.color = color;
    this.values = [];
    canvas.setAttribute('role', 'img');
  }

  push(value) {
    this.values.push(value);
    if (this.values.length > POINTS) this.values.shift();
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = c.clientWidth || 300;
    const height = c.clientHeight || 120;
    if (c.width !== Math.round(width * ratio)) c.width = Math.round(width * ratio);
    if (c.height !== Math.round(height * ratio)) c.height = Math.round(height * ratio);
    const g = c.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const known = this.values.filter((v) => v !== null && Number.isFinite(v));
    const max = niceMax(Math.max(0, ...known));
    const left = 44;
    const top = 8;
    const bottom = height - 16;
    const right = width - 8;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#444';
    g.strokeStyle = '#d0d4da';
    g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = bottom - (bottom - top) * f;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(right, Math.round(y) + 0.5);
      g.stroke();
      // a mid label that rounds to the top one (counts) would only mislead
      if (f !== 0.5 || this.format(max * f) !== this.format(max)) g.fillText(this.format(max * f), 2, y + 4);
    }
    g.strokeStyle = this.color;
    g.lineWidth = 2;
    g.beginPath();
    const step = (right - left) / (POINTS - 1);
    let drawing = false;
    this.values.forEach((v, i) => {
      const x = left + step * (POINTS - this.values.length + i);
      if (v === null || !Number.isFinite(v)) {
        drawing = false;
        return;
      }
      const y = bottom - (bottom - top) * (max ? v / max : 0);
      if (drawing) g.lineTo(x, y);
      else g.moveTo(x, y);
      drawing = true;
    });
    g.stroke();
    const last = this.values[this.values.length - 1];
    c.setAttribute('aria-label', last === null || last === undefined ? '—' : this.format(last));
  }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
