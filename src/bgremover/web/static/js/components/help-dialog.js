// <help-dialog>: the keyboard shortcuts, and how to get the dev test panel. Opens on bgremover:open {panel: "help"} (the "?" key
// or the top bar's button); closes on bgremover:close, Esc, its button or the backdrop.

const SHORTCUTS = [
  [["J"], "Open the job queue"],
  [["N"], "Open notifications"],
  [["H"], "Open history"],
  [["Ctrl", "H"], "Open history"],
  [["A"], "Open analytics (charts)"],
  [["P"], "Pause or resume the queue"],
  [["?"], "Show these shortcuts"],
  [["Esc"], "Close whatever is open"],
  [["Ctrl", "V"], "Paste images to upload them"],
];

import { PanelDialog } from "../panels.js";

class HelpDialog extends PanelDialog {
  static panel = "help";

  markup() {
    const rows = SHORTCUTS.map(([keys, what]) => `
      <tr><th scope="row">${keys.map((k) => `<kbd>${k}</kbd>`).join(" + ")}</th><td>${what}</td></tr>`).join("");
    return `
      <dialog class="help-dialog" aria-labelledby="help-title">
        <header class="dialog__header">
          <h2 id="help-title">Keyboard shortcuts</h2>
          <button type="button" class="close" data-action="close" aria-label="Close">✕</button>
        </header>
        <div class="dialog__body">
          <table class="help-dialog__keys">${rows}</table>
          <p class="muted">Shortcuts are ignored while you type in a field.</p>
          <p class="muted help-dialog__dev">The test panel (sample jobs, failures, cancels)
            appears when the server is started with <code>bgremover serve --dev</code>; a
            <code>?dev=1</code> in the address does not show it.</p>
        </div>
      </dialog>`;
  }
}

customElements.define("help-dialog", HelpDialog);
