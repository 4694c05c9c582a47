// STARCaster camera-trajectory editor: a curve widget on "STARCaster Camera Trajectory".
//
// Four lanes (yaw, pitch, roll, distance) over frames. Click an empty spot of a lane to add a
// keyframe there (the other channels keep their current curve value), drag a handle to move it
// (frame and that lane's value), double-click or Alt-click a handle to delete it (or select it
// and right-click the node > "Delete camera keyframe"). Every change is written as JSON
// ({"version": 1, "keyframes": [...]}) into the node's hidden `keyframes` STRING widget, so it
// is saved in the workflow (widgets_values) and sent to the server, which does the exact
// interpolation (quaternion slerp, monotone spline). Curves here are an approximation: linear
// angles, monotone cubic distance. After a run, the exact camera (preset + keyframes) is drawn
// dashed behind the curves.
import { app } from "../../scripts/app.js";
import { CHANNELS, NEUTRAL, clamp, parseKeyframes, serializeKeyframes, valueAt } from "./camera_keyframes.js";

const NODE_TYPE = "STARCasterCameraTrajectory";
const EDITOR_TYPE = "starcaster_camera_editor";
const LAYOUT = { margin: 15, left: 52, right: 10, header: 20, lane: 56, footer: 18, handle: 4.5, hit: 9 };
const DEFAULT_SPAN = 50; // frames shown before the clip length is known (2 s at 25 fps)
const DOUBLE_CLICK_MS = 400;
const MIN_WIDTH = 420; // of a new node (a loaded workflow keeps its layout)

// ------------------------------------------------------------------ the widget

function makeEditor(node, source) {
  const editor = {
    name: "camera_editor",
    type: EDITOR_TYPE,
    value: "",
    serialize: false, // the state lives in `source` (the keyframes widget), not here
    options: { serialize: false },
    selected: -1,
    drag: null,
    lastDown: { time: 0, index: -1 },
    drawY: 0,
    drawWidth: 400,

    state() {
      const text = source.value ?? "";
      if (this.cache?.text !== text) this.cache = { text, ...parseKeyframes(text) };
      return this.cache;
    },
    readOnly() {
      return !!this.state().error || node.inputs?.some((i) => i.widget?.name === source.name && i.link != null);
    },
    setKeys(keys) {
      source.value = serializeKeyframes(keys);
      source.callback?.(source.value, app.canvas, node);
      node.setDirtyCanvas(true, true);
    },
    /** [min, max] per lane: the defaults, widened to show every keyframe and the last run. */
    ranges() {
      if (this.drag) return this.drag.ranges; // frozen while dragging
      const { text, keys } = this.state(), run = node.starcasterCamera ?? null;
      if (this.rangeCache?.text === text && this.rangeCache.run === run) return this.rangeCache.value;
      const value = CHANNELS.map((ch, lane) => {
        let [lo, hi] = [ch.min, ch.max];
        for (const v of [...keys.map((k) => k[ch.key]), ...(run ?? []).map((row) => row[lane])]) {
          if (!Number.isFinite(v)) continue;
          while (v < lo) lo -= ch.grow;
          while (v > hi) hi += ch.grow;
        }
        return [Math.max(lo, ch.key === "distance" ? 0.05 : -180), Math.min(hi, ch.key === "distance" ? 10 : 180)];
      });
      this.rangeCache = { text, run, value };
      return value;
    },
    span() {
      if (this.drag) return this.drag.span; // frozen while dragging, so the axis does not move
      const framesWidget = node.widgets?.find((w) => w.name === "frames");
      const keys = this.state().keys;
      let n = framesWidget?.value > 0 ? framesWidget.value : node.starcasterCamera?.length || DEFAULT_SPAN;
      if (keys.length) n = Math.max(n, keys[keys.length - 1].frame + 1);
      return Math.max(2, n);
    },

    // geometry, in widget-local coordinates (y = 0 at the widget's top)
    plotX() {
      return [LAYOUT.margin + LAYOUT.left, this.drawWidth - LAYOUT.margin - LAYOUT.right];
    },
    laneTop(lane) {
      return LAYOUT.header + lane * LAYOUT.lane;
    },
    frameToX(f, span = this.span()) {
      const [x0, x1] = this.plotX();
      return x0 + ((x1 - x0) * f) / (span - 1);
    },
    xToFrame(x, span = this.span()) {
      const [x0, x1] = this.plotX();
      return clamp(Math.round(((x - x0) / (x1 - x0)) * (span - 1)), 0, span - 1);
    },
    valueToY(lane, v) {
      const [lo, hi] = this.ranges()[lane], top = this.laneTop(lane) + 5, h = LAYOUT.lane - 10;
      return top + h * (1 - (clamp(v, lo, hi) - lo) / (hi - lo));
    },
    yToValue(lane, y) {
      const [lo, hi] = this.ranges()[lane], top = this.laneTop(lane) + 5, h = LAYOUT.lane - 10;
      const v = lo + (1 - (y - top) / h) * (hi - lo);
      const step = CHANNELS[lane].step;
      return Number((Math.round(clamp(v, lo, hi) / step) * step).toFixed(step < 0.01 ? 3 : 1));
    },
    /** Node-local position of keyframe i in a lane (for tests and docs). */
    handlePos(index, lane) {
      const k = this.state().keys[index];
      return [this.frameToX(k.frame), this.drawY + this.valueToY(lane, k[CHANNELS[lane].key])];
    },
    /** Node-local position of (frame, value) in a lane. */
    pointPos(frame, lane, value) {
      return [this.frameToX(frame), this.drawY + this.valueToY(lane, value)];
    },

    computeSize(width) {
      return [width ?? 400, LAYOUT.header + CHANNELS.length * LAYOUT.lane + LAYOUT.footer];
    },

    draw(ctx, _node, width, y) {
      this.drawY = y;
      this.drawWidth = width;
      const { keys, error } = this.state();
      const span = this.span();
      const [x0, x1] = this.plotX();
      const height = this.computeSize(width)[1];
      ctx.save();
      ctx.translate(0, y);
      ctx.fillStyle = "#1b1b1f";
      ctx.strokeStyle = "#444";
      ctx.beginPath();
      ctx.roundRect(LAYOUT.margin, 0, width - 2 * LAYOUT.margin, height - 2, 6);
      ctx.fill();
      ctx.stroke();
      ctx.clip(); // long texts stay inside a narrow node
      ctx.font = "11px sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillStyle = error ? "#ff8a80" : "#bbb";
      const title = error
        ? `keyframes: ${error}`
        : `camera keyframes: ${keys.length}  ·  frames 0–${span - 1}` + (this.readOnly() ? "  ·  (input linked)" : "");
      ctx.fillText(title, LAYOUT.margin + 8, LAYOUT.header / 2 + 1);
      CHANNELS.forEach((ch, lane) => this.drawLane(ctx, ch, lane, keys, span, x0, x1));
      ctx.fillStyle = "#888";
      const k = keys[this.selected];
      ctx.fillText(
        k
          ? `frame ${k.frame}: ` + CHANNELS.map((c) => `${c.key} ${k[c.key].toFixed(c.step < 0.01 ? 3 : 1)}`).join("  ")
          : "click: add · drag: move · double-click: delete" + (node.starcasterCamera ? " · dashed: last run" : ""),
        LAYOUT.margin + 8, height - LAYOUT.footer / 2 - 2);
      ctx.restore();
    },

    drawLane(ctx, ch, lane, keys, span, x0, x1) {
      const top = this.laneTop(lane);
      ctx.strokeStyle = "#2e2e34";
      ctx.strokeRect(x0, top + 2, x1 - x0, LAYOUT.lane - 4);
      const rest = this.valueToY(lane, NEUTRAL[ch.key]);
      ctx.strokeStyle = "#3a3a42";
      ctx.beginPath();
      ctx.moveTo(x0, rest);
      ctx.lineTo(x1, rest);
      ctx.stroke();
      ctx.fillStyle = ch.color;
      ctx.textAlign = "right";
      ctx.fillText(ch.key, x0 - 6, top + LAYOUT.lane / 2 - 6);
      ctx.fillStyle = "#777";
      const [lo, hi] = this.ranges()[lane];
      ctx.fillText(`${hi}${ch.unit}`, x0 - 6, top + 9);
      ctx.fillText(`${lo}${ch.unit}`, x0 - 6, top + LAYOUT.lane - 8);
      ctx.textAlign = "left";
      const run = node.starcasterCamera;
      if (run?.length > 1) { // the exact camera of the last run (preset + keyframes), dashed
        ctx.strokeStyle = ch.color + "80";
        ctx.setLineDash([3, 3]);
        ctx.beginPath();
        run.forEach((row, f) => {
          const px = this.frameToX(f, span), py = this.valueToY(lane, row[lane]);
          f ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
        });
        const end = this.frameToX(run.length - 1, span); // the clip ends here; later keyframes are unused
        ctx.moveTo(end, top + 2);
        ctx.lineTo(end, top + LAYOUT.lane - 2);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (!keys.length) return;
      ctx.strokeStyle = ch.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      const steps = Math.min(400, Math.max(2, Math.round(x1 - x0)));
      for (let s = 0; s <= steps; s++) {
        const f = (s / steps) * (span - 1);
        const px = this.frameToX(f, span), py = this.valueToY(lane, valueAt(keys, ch.key, f));
        s ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
      }
      ctx.stroke();
      ctx.lineWidth = 1;
      keys.forEach((k, i) => {
        ctx.beginPath();
        ctx.arc(this.frameToX(k.frame, span), this.valueToY(lane, k[ch.key]), LAYOUT.handle, 0, 2 * Math.PI);
        ctx.fillStyle = i === this.selected ? "#fff" : ch.color;
        ctx.fill();
        ctx.strokeStyle = "#111";
        ctx.stroke();
      });
    },

    /** Which lane / keyframe is under a widget-local point; null outside the plot. */
    hitTest(x, y) {
      const [x0, x1] = this.plotX();
      const lane = Math.floor((y - LAYOUT.header) / LAYOUT.lane);
      if (lane < 0 || lane >= CHANNELS.length || x < x0 - LAYOUT.hit || x > x1 + LAYOUT.hit) return null;
      const keys = this.state().keys;
      let index = -1, best = LAYOUT.hit;
      keys.forEach((k, i) => {
        const d = Math.hypot(this.frameToX(k.frame) - x, this.valueToY(lane, k[CHANNELS[lane].key]) - y);
        if (d <= best) [index, best] = [i, d];
      });
      return { lane, index, frame: this.xToFrame(x), value: this.yToValue(lane, y) };
    },

    deleteKey(index) {
      const keys = this.state().keys.filter((_, i) => i !== index);
      this.selected = -1;
      this.setKeys(keys);
    },

    // LiteGraph calls this with pointer down, move (while pressed) and up events; pos is node-local.
    mouse(event, pos, _node) {
      const x = pos[0], y = pos[1] - this.drawY;
      const type = event.type ?? "";
      if (type.endsWith("down")) return this.onDown(event, x, y);
      if (type.endsWith("move") && this.drag) return this.onDrag(x, y);
      if (type.endsWith("up") && this.drag) {
        this.drag = null;
        node.setDirtyCanvas(true, true);
        return true;
      }
      return false;
    },

    onDown(event, x, y) {
      const hit = this.hitTest(x, y);
      if (!hit || this.readOnly()) return false;
      const keys = this.state().keys.map((k) => ({ ...k }));
      const now = event.timeStamp ?? performance.now();
      if (hit.index >= 0) {
        const double = this.lastDown.index === hit.index && now - this.lastDown.time < DOUBLE_CLICK_MS;
        this.lastDown = { time: now, index: hit.index };
        if (double || event.altKey) {
          this.deleteKey(hit.index);
          return true;
        }
        this.selected = hit.index;
      } else { // add a keyframe here; the other channels keep their current values
        const key = hit.frame;
        let index = keys.findIndex((k) => k.frame === key);
        if (index < 0) {
          const added = { frame: key };
          for (const ch of CHANNELS) added[ch.key] = valueAt(keys, ch.key, key);
          keys.push(added);
          keys.sort((a, b) => a.frame - b.frame);
          index = keys.indexOf(added);
        }
        keys[index][CHANNELS[hit.lane].key] = hit.value;
        this.selected = index;
        this.lastDown = { time: 0, index: -1 }; // adding is not the first half of a double-click
        this.setKeys(keys);
      }
      this.drag = { index: this.selected, lane: hit.lane, span: this.span(), ranges: this.ranges() };
      node.setDirtyCanvas(true, true);
      return true;
    },

    onDrag(x, y) {
      const { index, lane, span } = this.drag;
      const keys = this.state().keys.map((k) => ({ ...k }));
      const k = keys[index];
      if (!k) return false;
      const lo = index > 0 ? keys[index - 1].frame + 1 : 0;
      const hi = index < keys.length - 1 ? keys[index + 1].frame - 1 : span - 1;
      const frame = clamp(this.xToFrame(x, span), lo, hi); // never passes a neighbour: order stays valid
      const value = this.yToValue(lane, y);
      if (frame === k.frame && value === k[CHANNELS[lane].key]) return false;
      [k.frame, k[CHANNELS[lane].key]] = [frame, value];
      this.lastDown.time = 0; // a drag is not half of a double-click
      this.setKeys(keys);
      return true;
    },
  };
  return editor;
}

function hideWidget(widget) {
  widget.hidden = true;
  widget.computeSize = () => [0, -4];
}

app.registerExtension({
  name: "starcaster.cameraEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const source = this.widgets?.find((w) => w.name === "keyframes");
      if (!source) return result;
      hideWidget(source);
      this.starcasterEditor = this.addCustomWidget(makeEditor(this, source));
      const [w, h] = this.computeSize();
      this.setSize([Math.max(this.size[0], MIN_WIDTH, w), Math.max(this.size[1], h)]);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (Array.isArray(message?.camera)) this.starcasterCamera = message.camera;
      this.setDirtyCanvas(true, true);
    };

    const getExtraMenuOptions = nodeType.prototype.getExtraMenuOptions;
    nodeType.prototype.getExtraMenuOptions = function (_canvas, options) {
      const result = getExtraMenuOptions?.apply(this, arguments);
      const editor = this.starcasterEditor;
      const source = this.widgets?.find((w) => w.name === "keyframes");
      if (!editor || !source) return result;
      const entries = [
        {
          content: "Delete camera keyframe",
          disabled: editor.selected < 0 || editor.readOnly(),
          callback: () => editor.deleteKey(editor.selected),
        },
        { content: "Clear camera keyframes", callback: () => { editor.selected = -1; editor.setKeys([]); } },
        {
          content: "Edit camera keyframes JSON…",
          callback: () => {
            const text = window.prompt("Camera keyframes JSON (empty = the preset alone)", source.value ?? "");
            if (text === null) return;
            source.value = text.trim();
            editor.selected = -1;
            this.setDirtyCanvas(true, true);
          },
        },
      ];
      options?.push(null, ...entries);
      return result;
    };
  },
});
