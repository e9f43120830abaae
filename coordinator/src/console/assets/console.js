// flashgate console: live counts without reloading. Polls /live/orders.json and
// /live/rollouts.json every 2 s on pages that show orders or rollouts and moves their bars; a file chosen on the login page is
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

// The JSON at `path`, or null (offline, refused); a lost session goes to the login page.
async function poll(path) {
  let reply;
  try {
    reply = await fetch(path, { credentials: "same-origin", redirect: "manual" });
  } catch (e) {
    return null;
  }
  if (reply.type === "opaqueredirect" || reply.status === 0) {
    window.location.assign("/login");
    return null;
  }
  if (!reply.ok) return null;
  return reply.json();
}

function stamped() {
  const stamp = document.getElementById("live-stamp");
  if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
}

async function pollOrders() {
  const data = await poll("/live/orders.json");
  if (!data) return;
  for (const o of data.orders) {
    const svg = document.getElementById("bar-" + o.id);
    if (svg) setBar(svg, o);
    for (const field of ["ordered", "consumed", "failed", "reserved", "remaining"]) {
      const cell = document.getElementById(field + "-" + o.id);
      if (cell && cell.textContent !== String(o[field])) cell.textContent = String(o[field]);
    }
  }
  stamped();
}

function setWave(svg, w) {
  const pct = (n) => (w.targeted === 0 ? 0 : Math.min(100, (n * 100) / w.targeted));
  const confirmed = pct(w.confirmed);
  const failed = Math.min(pct(w.failed), 100 - confirmed);
  const c = svg.querySelector("rect.confirmed");
  const f = svg.querySelector("rect.failed");
  if (c) c.setAttribute("width", confirmed.toFixed(2));
  if (f) {
    f.setAttribute("x", confirmed.toFixed(2));
    f.setAttribute("width", failed.toFixed(2));
  }
  svg.classList.toggle("closed", !w.open);
  svg.setAttribute("aria-label", w.label);
}

function setText(id, text) {
  const e = document.getElementById(id);
  if (e && e.textContent !== text) e.textContent = text;
}

async function pollRollouts() {
  const data = await poll("/live/rollouts.json");
  if (!data) return;
  for (const r of data.rollouts) {
    const state = document.getElementById("state-" + r.id);
    if (state && state.textContent !== r.state) {
      state.textContent = r.state;
      state.className = "state-" + r.state;
      const reason = state.parentElement.querySelector(".reason");
      if (reason) reason.remove();
    }
    setText("open-" + r.id, `${r.open_waves} of ${r.waves.length}`);
    for (const w of r.waves) {
      const svg = document.getElementById(`wave-${r.id}-${w.index}`);
      if (svg) setWave(svg, w);
      setText(`count-${r.id}-${w.index}`, `${w.confirmed}/${w.targeted}`);
      setText(`isopen-${r.id}-${w.index}`, w.open ? "yes" : "no");
      for (const field of ["targeted", "confirmed", "failed", "pending", "superseded"]) {
        setText(`${field}-${r.id}-${w.index}`, String(w[field]));
      }
    }
    // Offer the action that applies in the rollout's state now.
    for (const holder of document.querySelectorAll(`[data-rollout="${r.id}"]`)) {
      for (const control of holder.querySelectorAll("[data-when]")) {
        control.hidden = control.dataset.when !== r.state;
      }
    }
  }
  stamped();
}

document.addEventListener("DOMContentLoaded", () => {
  const live = [];
  if (document.querySelector('[data-live="orders"]')) live.push(pollOrders);
  if (document.querySelector('[data-live="rollouts"]')) live.push(pollRollouts);
  if (live.length > 0) {
    const main = document.getElementById("main");
    const stamp = document.createElement("p");
    stamp.id = "live-stamp";
    stamp.className = "stamp";
    stamp.setAttribute("aria-live", "off");
    main.appendChild(stamp);
    setInterval(() => live.forEach((f) => f()), 2000);
  }
  const file = document.getElementById("token-file");
  const field = document.getElementById("token");
  if (file && field) {
    file.addEventListener("change", async () => {
      if (file.files.length > 0) field.value = (await file.files[0].text()).trim();
    });
  }
});
