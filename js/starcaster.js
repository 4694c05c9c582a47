// STARCaster frontend extension: shows what a node reports (e.g. the frame count of the audio)
// right on the node after it runs.
import { app } from "../../scripts/app.js";

const INFO_NODES = new Set(["STARCasterAudioFeatures", "STARCasterSaveIdentity"]);

app.registerExtension({
  name: "starcaster.nodeInfo",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!INFO_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      this.starcasterInfo = (message?.text ?? []).join(" ");
      this.setDirtyCanvas(true, false);
    };
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      onDrawForeground?.apply(this, arguments);
      if (!this.starcasterInfo || this.flags?.collapsed) return;
      ctx.save();
      ctx.font = "12px sans-serif";
      ctx.fillStyle = "#9fd49f";
      ctx.fillText(this.starcasterInfo, 10, this.size[1] - 8);
      ctx.restore();
    };
  },
});
