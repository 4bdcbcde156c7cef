import { setProgressAria } from "../format.js";

// <progress-bar value="42" status="processing" label="coffee.jpg">: a linear bar coloured by
// job status, with a shimmer while processing (none under prefers-reduced-motion, see CSS).

class ProgressBar extends HTMLElement {
  static observedAttributes = ["value", "status", "label"];

  connectedCallback() {
    this.setAttribute("role", "progressbar");
    this.setAttribute("aria-valuemin", "0");
    this.setAttribute("aria-valuemax", "100");
    if (!this.firstElementChild) {
      this.innerHTML = '<div class="progress-bar__fill"></div>';
    }
    this._render();
  }

  attributeChangedCallback() {
    if (this.isConnected) this._render();
  }

  _render() {
    const value = setProgressAria(this);
    const fill = this.firstElementChild;
    if (fill) fill.style.width = `${value}%`;
  }
}

customElements.define("progress-bar", ProgressBar);
