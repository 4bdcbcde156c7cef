import { setProgressAria } from "../format.js";

// <circular-progress value="42" status="processing" size="40">: a ring for compact places.

const RADIUS = 16;
const CIRCUMFERENCE = 2 * Math.PI * RADIUS;

class CircularProgress extends HTMLElement {
  static observedAttributes = ["value", "status", "label"];

  connectedCallback() {
    this.setAttribute("role", "progressbar");
    this.setAttribute("aria-valuemin", "0");
    this.setAttribute("aria-valuemax", "100");
    if (!this.querySelector("svg")) {
      this.innerHTML = `
        <svg viewBox="0 0 40 40" aria-hidden="true">
          <circle class="circular-progress__track" cx="20" cy="20" r="${RADIUS}"></circle>
          <circle class="circular-progress__value" cx="20" cy="20" r="${RADIUS}"
            stroke-dasharray="${CIRCUMFERENCE}" stroke-dashoffset="${CIRCUMFERENCE}"></circle>
        </svg>
        <span class="circular-progress__text"></span>`;
    }
    this._render();
  }

  attributeChangedCallback() {
    if (this.isConnected) this._render();
  }

  _render() {
    const value = setProgressAria(this);
    const ring = this.querySelector(".circular-progress__value");
    if (ring) ring.setAttribute("stroke-dashoffset", String(CIRCUMFERENCE * (1 - value / 100)));
    const text = this.querySelector(".circular-progress__text");
    if (text) text.textContent = `${Math.round(value)}`;
  }
}

customElements.define("circular-progress", CircularProgress);
