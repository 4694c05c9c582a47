// STARCaster camera keyframes: the JSON the camera-trajectory editor writes into the node's
// `keyframes` widget, and the curves it draws between keyframes (an approximation of the
// server's exact interpolation: linear angles, monotone cubic distance).

// Default value range of each lane; a lane widens (in steps of `grow`) when values lie outside it.
export const CHANNELS = [
  { key: "yaw", color: "#e8625f", min: -45, max: 45, grow: 15, step: 0.1, unit: "°" },
  { key: "pitch", color: "#62c462", min: -30, max: 30, grow: 15, step: 0.1, unit: "°" },
  { key: "roll", color: "#5f9fe8", min: -30, max: 30, grow: 15, step: 0.1, unit: "°" },
  { key: "distance", color: "#b584ea", min: 0.5, max: 1.5, grow: 0.25, step: 0.001, unit: "" },
];
export const NEUTRAL = { yaw: 0, pitch: 0, roll: 0, distance: 1 };

/** Parse the widget value -> {keys, error}. Empty = no keyframes (the preset alone). */
export function parseKeyframes(text) {
  if (!text || !String(text).trim()) return { keys: [], error: null };
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { keys: [], error: `malformed JSON (${e.message})` };
  }
  if (data?.preset) return { keys: [], error: "holds a preset, not keyframes (edit the JSON or clear it)" };
  if (!Array.isArray(data?.keyframes)) return { keys: [], error: 'expected {"version": 1, "keyframes": [...]}' };
  const keys = data.keyframes.map((k) => ({ ...NEUTRAL, ...k }));
  for (const [i, k] of keys.entries()) {
    if (!Number.isInteger(k.frame) || k.frame < 0) return { keys: [], error: `keyframe ${i} needs a whole "frame" >= 0` };
    if (CHANNELS.some((ch) => !Number.isFinite(k[ch.key]))) return { keys: [], error: `keyframe ${i} has a non-number` };
    if (i > 0 && k.frame <= keys[i - 1].frame) return { keys: [], error: `keyframes out of order at frame ${k.frame}` };
  }
  return { keys, error: null };
}

/** Keyframes -> the widget value ("" when there are none). */
export function serializeKeyframes(keys) {
  if (!keys.length) return "";
  const round = (v, step) => Math.round(v / step) * step;
  const keyframes = keys.map((k) => {
    const out = { frame: Math.round(k.frame) };
    for (const ch of CHANNELS) out[ch.key] = Number(round(k[ch.key], ch.step).toFixed(ch.step < 0.01 ? 3 : 1));
    return out;
  });
  return JSON.stringify({ version: 1, keyframes });
}

/** Monotone cubic (Fritsch-Carlson) tangents, like the server's distance spline. */
function pchipTangents(xs, ys) {
  const n = xs.length;
  const d = [];
  for (let i = 0; i < n - 1; i++) d.push((ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]));
  const m = [d[0], ...Array(Math.max(0, n - 2)).fill(0), d[n - 2]];
  for (let i = 1; i < n - 1; i++) {
    if (d[i - 1] * d[i] <= 0) continue;
    const h0 = xs[i] - xs[i - 1], h1 = xs[i + 1] - xs[i];
    const w1 = 2 * h1 + h0, w2 = h1 + 2 * h0;
    m[i] = (w1 + w2) / (w1 / d[i - 1] + w2 / d[i]);
  }
  return m;
}

/** The display curve of one channel at frame f (held before the first / after the last key). */
export function valueAt(keys, channel, f) {
  if (!keys.length) return NEUTRAL[channel];
  if (f <= keys[0].frame) return keys[0][channel];
  const last = keys[keys.length - 1];
  if (f >= last.frame) return last[channel];
  let i = 0;
  while (keys[i + 1].frame < f) i++;
  const a = keys[i], b = keys[i + 1];
  const h = b.frame - a.frame, t = (f - a.frame) / h;
  if (channel !== "distance") return a[channel] + t * (b[channel] - a[channel]);
  const m = pchipTangents(keys.map((k) => k.frame), keys.map((k) => k.distance));
  const t2 = t * t, t3 = t2 * t;
  return (2 * t3 - 3 * t2 + 1) * a.distance + (t3 - 2 * t2 + t) * h * m[i]
    + (-2 * t3 + 3 * t2) * b.distance + (t3 - t2) * h * m[i + 1];
}

export function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}
