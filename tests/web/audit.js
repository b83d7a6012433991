// For every visible control: its accessible name. For every visible text: the WCAG 2.1 contrast of
// its colour against the first opaque background behind it (AA: 4.5, or 3 for large text).
(() => {
  const visible = (e) => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none"; };
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (e) => { for (let n = e; n; n = n.parentElement) { const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length === 3 || c[3] > 0.5) return c.slice(0, 3); } return [255, 255, 255]; };
  const unlabelled = [];
  for (const c of document.querySelectorAll("input, select, textarea, button")) {
    if (!visible(c) || c.type === "hidden") continue;
    const name = c.labels && c.labels.length ? c.labels[0].textContent : c.getAttribute("aria-label") || (c.tagName === "BUTTON" ? c.textContent : "");
    if (!name || !name.trim()) unlabelled.push(c.outerHTML.slice(0, 120));
  }
  const contrast = [];
  for (const e of document.querySelectorAll("body *")) {
    if (!visible(e) || e.closest("#toast, button:disabled, svg")) continue;
    if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const s = getComputedStyle(e);
    const [l1, l2] = [lum(rgb(s.color)), lum(background(e))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) contrast.push(`${e.tagName}.${e.className} "${e.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return { unlabelled, contrast, lang: document.documentElement.lang, h1: document.querySelectorAll("h1").length,
           overflow: document.documentElement.scrollWidth - window.innerWidth };
})
