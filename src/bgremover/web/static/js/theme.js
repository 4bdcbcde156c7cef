// Light/dark theme. With no choice saved the system's setting applies (app.css follows
// prefers-color-scheme); the toggle saves an explicit choice as data-theme on <html>.

const KEY = "bgremover.theme";
const system = matchMedia("(prefers-color-scheme: dark)");

function current() {
  return document.documentElement.dataset.theme || (system.matches ? "dark" : "light");
}

export function installTheme(button) {
  const saved = localStorage.getItem(KEY);
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  if (!button) return;
  const label = () => {
    const next = current() === "dark" ? "light" : "dark";
    button.setAttribute("aria-pressed", String(current() === "dark"));
    button.title = `Switch to the ${next} theme`;
  };
  button.addEventListener("click", () => {
    const next = current() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem(KEY, next);
    label();
  });
  system.addEventListener("change", label);
  label();
}
