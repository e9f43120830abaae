// flashgate console: live counts without reloading. Polls /live/orders.json every 2 s on
// pages that show orders and moves their progress bars; a file chosen on the login page is
// read into the token field. No framework, nothing fetched from elsewhere.
"use strict";

function setBar(svg, o) {
  const pct = (n) => (o.ordered === 0 ? 0 : Math.min(100, (n * 100) / o.ordered));
  const consumed = pct(o.consumed);
  const reserved = pct(o.reserved);
  const remaining = Math.max(0, 100 - consumed - reserved);
  const rects = {
    consumed: [0, consumed],
    reserved: [consumed, reserved],
    remaining: [consumed + reserved, remaining],
    failed: [0, pct(o.failed)],
  };
  for (const [cls, [x, w]] of Object.entries(rects)) {
    const r = svg.querySelector("rect." + cls);
    if (r) {
      r.setAttribute("x", x.toFixed(2));
      r.setAttribute("width", w.toFixed(2));
    }
  }
  svg.setAttribute(
    "aria-label",
    `${o.consumed} of ${o.ordered} consumed, ${o.reserved} reserved, ${o.remaining} remaining, ${o.failed} failed`
  );
}

async function pollOrders() {
  let reply;
  try {
    reply = await fetch("/live/orders.json", { credentials: "same-origin", redirect: "manual" });
  } catch (e) {
    return;
  }
  if (reply.type === "opaqueredirect" || reply.status === 0) {
    window.location.assign("/login");
    return;
  }
  if (!reply.ok) return;
  const data = await reply.json();
  for (const o of data.orders) {
    const svg = document.getElementById("bar-" + o.id);
    if (svg) setBar(svg, o);
    for (const field of ["ordered", "consumed", "failed", "reserved", "remaining"]) {
      const cell = document.getElementById(field + "-" + o.id);
      if (cell && cell.textContent !== String(o[field])) cell.textContent = String(o[field]);
    }
  }
  const stamp = document.getElementById("live-stamp");
  if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.querySelector('[data-live="orders"]')) {
    const main = document.getElementById("main");
    const stamp = document.createElement("p");
    stamp.id = "live-stamp";
    stamp.className = "stamp";
    stamp.setAttribute("aria-live", "off");
    main.appendChild(stamp);
    setInterval(pollOrders, 2000);
  }
  const file = document.getElementById("token-file");
  const field = document.getElementById("token");
  if (file && field) {
    file.addEventListener("change", async () => {
      if (file.files.length > 0) field.value = (await file.files[0].text()).trim();
    });
  }
});
