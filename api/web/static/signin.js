// Sign-in: check the token against /v1/me, keep it for this tab, go where the user was going (or to
// the page that fits their organisation).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("signin-form");
  const input = document.getElementById("token");
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    RX.showError("signin-error", null);
    const value = input.value.trim();
    if (!value) {
      document.getElementById("signin-error").textContent = "token: paste your API token";
      return;
    }
    try {
      const who = await RX.api("GET", "/v1/me", { useToken: value });
      RX.remember(value, who);
      const next = new URLSearchParams(location.search).get("next");
      // only our own pages: never an open redirect
      location.assign(next && /^\/ui\/[a-z]*$/.test(next) ? next : RX.homeOf(who));
    } catch (error) {
      input.value = "";
      document.getElementById("signin-error").textContent =
        error.status === 401 ? "That token is not valid (unknown, expired, revoked, or its user is disabled)." : RX.describe(error);
    }
  });
});
