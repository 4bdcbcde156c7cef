// <preset-picker>: the saved presets (named sets of upload options) beside the drop zone's
// options. Picking one dispatches `preset-chosen` {preset} so the drop zone fills its form
// with it; "Save as preset…" stores what `currentOptions()` returns under a new name.
//
// Set `currentOptions` (a function returning {format, background_color, alpha_matting,
// refine_foreground, post_process_mask, priority}) before the user can save.

import { api, ApiError } from "../api.js";

// The server's rule (jobs/presets.py), so a bad name is caught before it is sent.
const NAME_PATTERN = "[A-Za-z0-9](?:[A-Za-z0-9 _\\-]{0,62}[A-Za-z0-9_\\-])?";

class PresetPicker extends HTMLElement {
  connectedCallback() {
    if (this._select) return;
    this.innerHTML = `
      <label>Preset
        <select name="preset"><option value="">None</option></select>
      </label>
      <button type="button" data-action="delete" disabled>Delete preset</button>
      <button type="button" data-action="new">Save as preset…</button>
      <span class="preset-picker__save" hidden>
        <input type="text" name="preset_name" maxlength="64" pattern="${NAME_PATTERN}"
               placeholder="Preset name" aria-label="Preset name" autocomplete="off"
               title="Letters, digits, spaces, - and _ (up to 64)">
        <button type="button" data-action="save">Save</button>
        <button type="button" data-action="cancel">Cancel</button>
      </span>
      <span class="preset-picker__message muted" role="status" aria-live="polite"></span>`;
    this._select = this.querySelector("select");
    this._delete = this.querySelector("[data-action=delete]");
    this._saveRow = this.querySelector(".preset-picker__save");
    this._name = this.querySelector("input[name=preset_name]");
    this._message = this.querySelector(".preset-picker__message");
    this._presets = new Map();
    this._wire();
    this.refresh();
  }

  _wire() {
    this._select.addEventListener("change", () => {
      const preset = this._presets.get(this._select.value);
      this._delete.disabled = !preset;
      if (preset) this.dispatchEvent(new CustomEvent("preset-chosen", { detail: { preset }, bubbles: true }));
    });
    this.querySelector("[data-action=new]").addEventListener("click", () => {
      this._saveRow.hidden = false;
      this._name.value = this._select.value;
      this._name.focus();
    });
    this.querySelector("[data-action=cancel]").addEventListener("click", () => {
      this._saveRow.hidden = true;
    });
    this.querySelector("[data-action=save]").addEventListener("click", () => this._save());
    this._name.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); this._save(); }
      if (event.key === "Escape") { event.preventDefault(); this._saveRow.hidden = true; }
    });
    this._delete.addEventListener("click", () => this._remove());
  }

  /** Reload the list from the server, keeping `selected` (or the current choice) chosen. */
  async refresh(selected = this._select.value) {
    try {
      const presets = await api.presets();
      this._presets = new Map(presets.map((preset) => [preset.name, preset]));
    } catch (error) {
      this._say(`Presets could not be loaded: ${error.message}`);
      return;
    }
    const none = this._select.options[0];
    this._select.replaceChildren(none, ...[...this._presets.keys()].map((name) => new Option(name, name)));
    this._select.value = this._presets.has(selected) ? selected : "";
    this._delete.disabled = !this._select.value;
  }

  async _save() {
    const name = this._name.value.trim();
    if (!name || !this._name.checkValidity()) {
      this._say("A preset name is 1–64 letters, digits, spaces, - or _.");
      this._name.focus();
      return;
    }
    try {
      await api.savePreset({ name, ...this.currentOptions() });
    } catch (error) {
      this._say(error instanceof ApiError ? error.message : `Not saved: ${error.message}`);
      return;
    }
    this._saveRow.hidden = true;
    await this.refresh(name);
    this._say(`Saved preset “${name}”.`);
  }

  async _remove() {
    const name = this._select.value;
    if (!name) return;
    try {
      await api.deletePreset(name);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        this._say(error.message);
        return;
      }
    }
    await this.refresh("");
    this._say(`Deleted preset “${name}”.`);
  }

  _say(text) {
    this._message.textContent = text;
  }
}

customElements.define("preset-picker", PresetPicker);
