// <token-dialog>: asks for the server's access token after it answered 401 (it does when it
// listens beyond this machine). Opens on bgremover:open {panel: "token"}; the token is kept by
// api.setToken and the page reloads so every request and the event stream start over with it.

import { api, setToken, token } from "../api.js";
import { PanelDialog } from "../panels.js";

class TokenDialog extends PanelDialog {
  static panel = "token";
  static lightDismiss = false; // nothing works without the token: a stray click keeps it open

  markup() {
    return `
      <dialog class="token-dialog" aria-labelledby="token-title">
        <form method="dialog" class="token-dialog__form">
          <header class="dialog__header">
            <h2 id="token-title">Access token needed</h2>
          </header>
          <div class="dialog__body">
            <p>This server only answers people who have its access token
              (<code>BGREMOVER_TOKEN</code> on the server).</p>
            <p class="token-dialog__refused" role="alert" hidden>The saved token was refused.</p>
            <input type="text" name="username" value="bgremover" autocomplete="username" hidden>
            <label for="token-input">Access token</label>
            <input id="token-input" name="token" type="password" required autocomplete="current-password"
                   spellcheck="false">
            <div class="token-dialog__actions">
              <button type="submit" class="primary">Continue</button>
            </div>
          </div>
        </form>
      </dialog>`;
  }

  setUp() {
    const form = this.querySelector("form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = form.elements.token.value.trim();
      if (!value) return;
      setToken(value);
      // The cookie also lets in what carries no header, such as a link opened in a new tab;
      // a refused token shows this dialog again after the reload.
      await api.login().catch(() => {});
      location.reload();
    });
  }

  open() {
    // Many requests fail at once with 401; the first one opens the dialog, the rest find it open.
    if (this.dialog.open) return;
    this.querySelector(".token-dialog__refused").hidden = !token();
    this.show();
  }
}

customElements.define("token-dialog", TokenDialog);
