// HyperBatch dashboard: the job page's buttons and live log. They call the API itself, with the
// session cookie the browser sends on its own; output is added as text, never as HTML.
"use strict";

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = !text;
}

async function act(button) {
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const answer = await fetch(button.dataset.action, { method: button.dataset.method, credentials: "same-origin" });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      notice(body.message || `${answer.status} ${answer.statusText}`);
      button.disabled = false;
      return;
    }
    window.location.reload();
  } catch (err) {
    notice(`cannot reach the server: ${err}`);
    button.disabled = false;
  }
}

// The job's state as the live log last told it: its badge, and which buttons apply now.
function showState(state) {
  for (const badge of document.querySelectorAll("[data-live-state]")) {
    badge.textContent = state;
    badge.className = `state s-${state}`;
  }
  for (const button of document.querySelectorAll("button[data-states]")) {
    button.disabled = !button.dataset.states.split(" ").includes(state);
  }
}

function follow(pre) {
  const decoder = new TextDecoder("utf-8");
  let offset = 0;
  async function poll() {
    let chunk;
    try {
      const answer = await fetch(`${pre.dataset.src}&offset=${offset}`, { credentials: "same-origin" });
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        notice(body.message || `${answer.status} ${answer.statusText}`);
        return;
      }
      chunk = await answer.json();
    } catch (err) {
      window.setTimeout(poll, 3000);  // the daemon restarting: try again
      return;
    }
    const bytes = Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0));
    const text = decoder.decode(bytes, { stream: !chunk.final });
    if (text) {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(text));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    offset = chunk.offset;
    if (!pre.dataset.task) showState(chunk.state);  // a task's log tells the task's state, not the job's
    if (chunk.final) {
      pre.dataset.final = "true";
      return;
    }
    window.setTimeout(poll, 1000);
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button));
  }
  const log = document.getElementById("log");
  if (log) follow(log);
});
