// Panels: the app's dialogs open and close through window events, so a key, a button or a
// notification opens one without holding the element that shows it.
//   bgremover:open {panel, ...detail}  opens the dialog whose `static panel` is `panel`
//   bgremover:close                    closes every open one

/** Open the panel named `panel` ("jobs", "history", "editor", …) with what it should show. */
export function openPanel(panel, detail = {}) {
  window.dispatchEvent(new CustomEvent("bgremover:open", { detail: { panel, ...detail } }));
}

/** Close every open panel. */
export function closePanels() {
  window.dispatchEvent(new CustomEvent("bgremover:close"));
}

/**
 * The base of the app's modal dialogs: a custom element holding one <dialog>.
 *
 * A subclass names its `static panel`, returns its markup from `markup()` and wires the rest
 * in `setUp()` (both run once, when first connected). The base opens it on bgremover:open for
 * its panel (`open(detail)`, which a subclass extends to load what it shows), closes it on
 * bgremover:close, a click on the backdrop (unless `static lightDismiss` is false) and any
 * `[data-action="close"]`, and hands every other `[data-action]` click to `onAction`.
 */
export class PanelDialog extends HTMLElement {
  static panel = "";
  static lightDismiss = true;

  connectedCallback() {
    if (this.dialog) return;
    this.innerHTML = this.markup();
    this.dialog = this.querySelector("dialog");
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) {
        if (this.constructor.lightDismiss) this.close(); // the backdrop
        return;
      }
      const target = event.target.closest("[data-action]");
      if (target?.dataset.action === "close") this.close();
      else if (target) this.onAction(target.dataset.action, target, event);
    });
    this.dialog.addEventListener("close", () => this.closed());
    window.addEventListener("bgremover:open", (event) => {
      if (event.detail?.panel === this.constructor.panel) this.open(event.detail);
    });
    window.addEventListener("bgremover:close", () => this.close());
    this.setUp();
  }

  /** The element's HTML, with the <dialog> in it. */
  markup() {
    return "<dialog></dialog>";
  }

  /** Wire what the base does not (forms, lists, the store); runs after `markup()`. */
  setUp() {}

  /** Show it; a subclass extends this to load what `detail` asks for. */
  open(_detail = {}) {
    this.show();
  }

  show() {
    if (!this.dialog.open) this.dialog.showModal();
  }

  close() {
    if (this.dialog?.open) this.dialog.close();
  }

  /** A click on a `[data-action]` element other than close. */
  onAction(_action, _target, _event) {}

  /** The dialog has closed (by any way: Esc, a button, bgremover:close). */
  closed() {}
}
