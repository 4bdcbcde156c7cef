// <outage-banner>: a strip under the top bar while a server dependency fails ("Results
// storage is full: jobs are waiting"), from the store's `health` (the snapshot and
// `health.updated` events), so every open page shows and clears it at the same moment.

import { store } from "../store.js";

function sentence(error) {
  const text = error || "a server dependency is failing";
  return text.charAt(0).toUpperCase() + text.slice(1);
}

class OutageBanner extends HTMLElement {
  connectedCallback() {
    if (this._ready) return;
    this._ready = true;
    this.setAttribute("role", "status");
    this.setAttribute("aria-live", "polite");
    this.className = "outage-banner";
    this._unlisten = store.on("health", () => this.render());
    this.render();
  }

  disconnectedCallback() {
    if (this._unlisten) this._unlisten();
    this._ready = false;
  }

  render() {
    const outages = store.outages();
    this.hidden = outages.length === 0;
    this.replaceChildren(...outages.map((outage) => {
      const line = document.createElement("p");
      line.className = "outage-banner__line";
      line.dataset.dependency = outage.name;
      line.textContent = `${sentence(outage.error)}: jobs are waiting`;
      if (outage.since) line.title = `Since ${new Date(outage.since).toLocaleString()}`;
      return line;
    }));
  }
}

customElements.define("outage-banner", OutageBanner);
