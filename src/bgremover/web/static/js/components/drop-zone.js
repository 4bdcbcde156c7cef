// <drop-zone>: where images come in — drag and drop, the file picker, or paste anywhere on
// the page — with the output options of the upload (format, background colour, edge
// refinement, priority and an optional manual batch name), which a saved preset can fill in.
//
// After a successful upload it dispatches `bgremover:uploaded` {batch, jobs} on window (the
// results grid shows those jobs) and puts the new jobs into the store unless the live events
// brought them first, so the cards appear without waiting for the event stream.

import { IMAGE_ACCEPT, api, ApiError } from "../api.js";
import { store } from "../store.js";
import { batchName, bytes, escapeHtml } from "../format.js";
import "./preset-picker.js";

const FORMATS = "JPEG, PNG, WebP, HEIC or AVIF";
let counter = 0;

class DropZone extends HTMLElement {
  connectedCallback() {
    if (this._form) return;
    const id = `drop-zone-${++counter}`;
    this.innerHTML = `
      <div class="drop-zone__target" role="button" tabindex="0"
           aria-describedby="${id}-hint" aria-controls="${id}-input">
        <p class="drop-zone__title"><strong>Drop images here</strong>, paste them, or
          <span class="drop-zone__link">choose files</span></p>
        <p class="drop-zone__hint muted" id="${id}-hint">${FORMATS}, many at once</p>
      </div>
      <label class="visually-hidden" for="${id}-input">Choose images to upload</label>
      <input type="file" id="${id}-input" class="visually-hidden" multiple
             accept="${IMAGE_ACCEPT}" tabindex="-1">
      <form class="drop-zone__options" aria-label="Output options">
        <fieldset>
          <label>Format
            <select name="format">
              <option value="png">PNG (transparent)</option>
              <option value="webp">WebP (transparent)</option>
              <option value="jpeg">JPEG</option>
              <option value="mask">Mask only</option>
              <optgroup label="Clips (photos get PNG or JPEG)">
                <option value="webm">WebM VP9 (transparent, plays in browsers)</option>
                <option value="mov">MOV ProRes 4444 (transparent, for editors)</option>
                <option value="mp4">MP4 H.264 (on the background)</option>
                <option value="gif">Animated GIF</option>
                <option value="zip">ZIP of PNG frames</option>
              </optgroup>
            </select>
          </label>
          <label class="drop-zone__model" hidden>Model
            <select name="model"></select>
          </label>
          <label class="drop-zone__bg">
            <input type="checkbox" name="use_background"> Background
            <input type="color" name="background_color" value="#ffffff" disabled
                   aria-label="Background colour">
          </label>
          <label title="Refine soft edges such as hair (slower)">
            <input type="checkbox" name="alpha_matting"> Refine edges</label>
          <label title="Use the subject's own colours on soft edges, so the old background does not tint them (slower)">
            <input type="checkbox" name="refine_foreground"> Clean edge colours</label>
          <label title="Smooth the mask to hard edges">
            <input type="checkbox" name="post_process_mask"> Smooth mask</label>
          <label>Priority
            <select name="priority">
              <option value="10">High</option>
              <option value="0" selected>Normal</option>
              <option value="-10">Low</option>
            </select>
          </label>
          <label class="drop-zone__batch">Batch name
            <input type="text" name="batch_name" maxlength="200" placeholder="automatic"
                   autocomplete="off">
          </label>
          <preset-picker></preset-picker>
        </fieldset>
      </form>
      <div class="drop-zone__message" role="status" aria-live="polite" hidden></div>`;
    this._target = this.querySelector(".drop-zone__target");
    this._input = this.querySelector("input[type=file]");
    this._form = this.querySelector("form");
    this._hint = this.querySelector(".drop-zone__hint");
    this._message = this.querySelector(".drop-zone__message");
    this._manual = null; // {name, id} of the manual batch made for the current name
    this._wire();
    this._showLimit(store.config);
    store.on("config", (config) => this._showLimit(config));
    this._defaultModel = null;
    api.models().then((models) => this._showModels(models), () => {}); // none: no choice shown
  }

  /** Offer this server's models (GET /api/models); shown only when there is a choice. */
  _showModels(models) {
    const select = this._form.elements.model;
    select.replaceChildren(...models.map((model) => {
      const option = new Option(model.name, model.name, model.default, model.default);
      option.title = `${model.family}: ${model.description}`;
      return option;
    }));
    this._defaultModel = models.find((model) => model.default)?.name ?? null;
    this.querySelector(".drop-zone__model").hidden = models.length < 2;
  }

  _wire() {
    const pick = () => { if (!this._busy) this._input.click(); };
    this._target.addEventListener("click", pick);
    // Like a native button: Enter acts on keydown, Space on keyup (keydown only stops the
    // page from scrolling).
    this._target.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") event.preventDefault();
      if (event.key === "Enter" && !event.repeat) pick();
    });
    this._target.addEventListener("keyup", (event) => {
      if (event.key === " ") pick();
    });
    this._input.addEventListener("change", () => {
      const files = [...this._input.files];
      this._input.value = ""; // choosing the same files again still fires "change"
      this.upload(files);
    });
    const colour = this._form.elements.background_color;
    this._form.elements.use_background.addEventListener("change", (event) => {
      colour.disabled = !event.target.checked;
    });
    this._form.addEventListener("submit", (event) => event.preventDefault());
    const picker = this.querySelector("preset-picker");
    picker.currentOptions = () => this._options();
    picker.addEventListener("preset-chosen", (event) => this._apply(event.detail.preset));

    // Drops anywhere on the page count (missing the target by a few pixels would otherwise
    // make the browser navigate away to the image); file inputs and open dialogs keep theirs.
    const ours = (event) => event.dataTransfer?.types?.includes("Files")
      && !event.target.closest?.("dialog[open], input[type=file]");
    let depth = 0;
    window.addEventListener("dragenter", (event) => {
      if (!ours(event)) return;
      depth += 1;
      this.toggleAttribute("dragging", true);
    });
    window.addEventListener("dragleave", (event) => {
      if (!ours(event)) return;
      depth = Math.max(0, depth - 1);
      if (!depth) this.removeAttribute("dragging");
    });
    window.addEventListener("dragover", (event) => {
      if (!ours(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = this._busy ? "none" : "copy";
    });
    window.addEventListener("drop", (event) => {
      depth = 0;
      this.removeAttribute("dragging");
      if (!ours(event)) return;
      event.preventDefault();
      this.upload([...event.dataTransfer.files]);
    });
    // Paste anywhere on the page; a clipboard without files (plain text) is left alone.
    document.addEventListener("paste", (event) => {
      if (event.target.closest?.("dialog[open]")) return;
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.upload(files);
    });
  }

  _showLimit(config) {
    if (!config?.max_upload_bytes) return;
    this._hint.textContent = `${FORMATS}, many at once, up to ${bytes(config.max_upload_bytes)} each`;
  }

  /** Upload `files` with the chosen options; resolves when the server answered. */
  async upload(files) {
    if (!files.length || this._busy) return;
    this._setBusy(true);
    this._say("info", `Uploading ${files.length} ${files.length === 1 ? "image" : "images"}…`);
    try {
      const options = this._options();
      const name = this._form.elements.batch_name.value.trim();
      let response;
      if (name) {
        response = await this._uploadToManual(name, files, options);
      } else {
        response = await api.upload(files, options);
      }
      // The live events may already have brought newer states (a job can fail before the
      // response arrives); the response only fills in what they have not.
      store.upsertBatches([response.batch].filter((batch) => !store.batches.has(batch.id)));
      store.upsertJobs(response.jobs.filter((job) => !store.jobs.has(job.id)));
      window.dispatchEvent(new CustomEvent("bgremover:uploaded", {
        detail: { batch: response.batch, jobs: response.jobs },
      }));
      this._report(response.jobs.length, batchName(response.batch), response.rejected || []);
    } catch (error) {
      const rejected = error instanceof ApiError ? error.body?.error?.rejected || [] : [];
      if (rejected.length) this._report(0, "", rejected);
      else this._say("error", error instanceof ApiError ? error.message : `Upload failed: ${error.message}`);
    } finally {
      this._setBusy(false);
    }
  }

  /** A named batch is made once per name; later uploads with the same name join it. */
  async _uploadToManual(name, files, options) {
    if (this._manual?.name === name) {
      try {
        return await api.upload(files, { ...options, batch_id: this._manual.id });
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
    }
    const batch = await api.createManualBatch(name);
    this._manual = { name, id: batch.id };
    return api.upload(files, { ...options, batch_id: batch.id });
  }

  _options() {
    const form = this._form.elements;
    return {
      format: form.format.value,
      priority: Number(form.priority.value),
      background_color: form.use_background.checked ? form.background_color.value : undefined,
      alpha_matting: form.alpha_matting.checked,
      refine_foreground: form.refine_foreground.checked,
      post_process_mask: form.post_process_mask.checked,
      // Only a choice is sent: a job without one runs the server's default.
      model: form.model.value && form.model.value !== this._defaultModel
        ? form.model.value : undefined,
    };
  }

  /** Fill the options with a preset's; the next upload sends them. */
  _apply(preset) {
    const form = this._form.elements;
    form.format.value = preset.format;
    const priority = String(preset.priority);
    if (![...form.priority.options].some((option) => option.value === priority)) {
      form.priority.add(new Option(`Custom (${priority})`, priority));
    }
    form.priority.value = priority;
    const colour = preset.background_color;
    form.use_background.checked = Boolean(colour);
    form.background_color.disabled = !colour;
    if (colour) form.background_color.value = colour.slice(0, 7);
    form.alpha_matting.checked = preset.alpha_matting;
    form.refine_foreground.checked = preset.refine_foreground;
    form.post_process_mask.checked = preset.post_process_mask;
    const model = preset.model ?? this._defaultModel;
    if ([...form.model.options].some((option) => option.value === model)) form.model.value = model;
  }

  _report(accepted, batchName, rejected) {
    const parts = [];
    if (accepted) {
      parts.push(`<p>Added ${accepted} ${accepted === 1 ? "image" : "images"} to
        <strong>${escapeHtml(batchName)}</strong>.</p>`);
    }
    if (rejected.length) {
      parts.push(`<p>${rejected.length} ${rejected.length === 1 ? "file was" : "files were"} refused:</p>
        <ul class="drop-zone__rejected">${rejected.map((r) =>
          `<li>${escapeHtml(r.error?.message || r.file_name)}</li>`).join("")}</ul>`);
    }
    this._say(rejected.length ? (accepted ? "warning" : "error") : "success", parts.join(""), true);
  }

  _say(kind, content, html = false) {
    this._message.hidden = false;
    this._message.dataset.kind = kind;
    if (html) this._message.innerHTML = content;
    else this._message.textContent = content;
  }

  _setBusy(busy) {
    this._busy = busy;
    this.toggleAttribute("busy", busy);
    this._target.setAttribute("aria-disabled", String(busy));
    this._form.querySelector("fieldset").disabled = busy;
  }
}

customElements.define("drop-zone", DropZone);
