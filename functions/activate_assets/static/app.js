// The activation page (GET /activate): sign in with Firebase Authentication, look a user code up,
// approve or deny it. Everything that comes from the URL or the server is written as text, never as HTML.
import { initializeApp } from "https://www.gstatic.com/firebasejs/12.19.0/firebase-app.js";
import {
  connectAuthEmulator,
  indexedDBLocalPersistence,
  initializeAuth,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signOut,
} from "https://www.gstatic.com/firebasejs/12.19.0/firebase-auth.js";

const LETTERS = "BCDFGHJKLMNPQRSTVWXZ";
const CODE = new RegExp(`^[${LETTERS}]{4}-?[${LETTERS}]{4}$`);
const config = JSON.parse(document.getElementById("activate-config").textContent);
// No popup or redirect resolver: password sign-in needs no iframe, and the page's CSP allows none.
const auth = initializeAuth(initializeApp(config.firebase), { persistence: indexedDBLocalPersistence });
if (config.authEmulator) {
  connectAuthEmulator(auth, config.authEmulator);
}

const $ = (id) => document.getElementById(id);
const WRONG_CODE =
  "That code is wrong, has expired or was already used. Check the code on your device, or start again there.";
let pending = null; // the request looked up: {user_code, agent_display_name, tenant_id, actions, expires_at}

function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
}

function showOnly(...ids) {
  for (const id of ["sign-in-form", "code-form", "request"]) {
    $(id).hidden = !ids.includes(id);
  }
}

function busy(on) {
  for (const button of document.querySelectorAll("button")) {
    button.disabled = on;
  }
}

// The code as a person may type it: spaces dropped, any case. null when it cannot be a code.
function typedCode() {
  const code = $("user-code").value.replace(/\s+/g, "").toUpperCase();
  return CODE.test(code) ? code : null;
}

async function call(url, body) {
  const user = auth.currentUser;
  if (!user) {
    return { status: 401, body: {} };
  }
  const token = await user.getIdToken();
  const answer = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let parsed = {};
  try {
    parsed = await answer.json();
  } catch {
    parsed = {};
  }
  return { status: answer.status, body: parsed };
}

function refused(status) {
  if (status === 404) {
    say(WRONG_CODE, "error");
  } else if (status === 429) {
    say("Too many wrong codes. Wait a minute, then try again.", "error");
  } else if (status === 401) {
    say("This account is not registered here, or it is disabled. Sign in with another account, or ask an administrator.",
      "error");
  } else if (status === 403) {
    say("This account cannot approve devices.", "error");
  } else {
    say("Something went wrong on our side. Try again in a moment.", "error");
  }
}

async function lookUp() {
  const code = typedCode();
  if (!code) {
    say("A code is 8 letters, like BCDF-GHJK (no vowels). Check it on your device.", "error");
    $("user-code").focus();
    return;
  }
  busy(true);
  say("Looking the code up…");
  try {
    const { status, body } = await call(config.lookup, { user_code: code });
    if (status !== 200) {
      pending = null;
      showOnly("code-form");
      refused(status);
      return;
    }
    pending = body;
    $("request-code").textContent = body.user_code;
    $("agent-name").textContent = body.agent_display_name;
    $("tenant").textContent = body.tenant_id;
    const list = $("actions");
    list.replaceChildren(
      ...body.actions.map((action) => {
        const item = document.createElement("li");
        item.textContent = action;
        return item;
      }),
    );
    if (body.actions.length === 0) {
      list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "none" }));
    }
    $("expires").textContent = new Date(body.expires_at).toLocaleString();
    showOnly("request");
    say(`${body.agent_display_name} asks to act for you. Approve only if you started this.`);
    $("approve").focus();
  } catch {
    say("Could not reach the server. Check your connection and try again.", "error");
  } finally {
    busy(false);
  }
}

async function decide(approve) {
  if (!pending) {
    return;
  }
  busy(true);
  try {
    const { status, body } = await call(config.decide, { user_code: pending.user_code, approve });
    const name = pending.agent_display_name;
    pending = null;
    showOnly();
    if (status !== 200) {
      showOnly("code-form");
      refused(status);
    } else if (body.approved) {
      say(`Approved. ${name} can now act for you. You can close this page and go back to your device.`, "success");
    } else {
      say(`Denied. ${name} was not given access. You can close this page.`);
    }
  } catch {
    say("Could not reach the server. Check your connection and try again.", "error");
  } finally {
    busy(false);
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  busy(true);
  say("Signing in…");
  try {
    await signInWithEmailAndPassword(auth, $("email").value.trim(), $("password").value);
    $("password").value = "";
  } catch {
    say("Wrong email or password.", "error");
  } finally {
    busy(false);
  }
});

$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  lookUp();
});
$("approve").addEventListener("click", () => decide(true));
$("deny").addEventListener("click", () => decide(false));
$("sign-out").addEventListener("click", () => signOut(auth));

// ?user_code= pre-fills the field: untrusted text, set as the input's value only.
const given = new URLSearchParams(window.location.search).get("user_code");
if (given) {
  $("user-code").value = given.slice(0, 16);
}

onAuthStateChanged(auth, (user) => {
  pending = null;
  $("signed-in").hidden = !user;
  $("who").textContent = user ? user.email || user.uid : "";
  if (!user) {
    showOnly("sign-in-form");
    say("Sign in to continue.");
    $("email").focus();
  } else if (typedCode()) {
    showOnly("code-form");
    lookUp();
  } else {
    showOnly("code-form");
    say(given ? "That is not a code: a code is 8 letters, like BCDF-GHJK." : "Enter the code your device shows.",
      given ? "error" : "info");
    $("user-code").focus();
  }
});
