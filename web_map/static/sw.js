/* The phone page's service worker (served at /m/sw.js, scope /m/, with `SHELL` written above
 * this by web_map/pages.py: the page, its files and their version).
 *
 * It keeps the page and its files so that the page opens without a connection (a stairwell,
 * a basement); the page keeps its own data and queued actions (IndexedDB, localStorage). The
 * page itself is asked of the network first (a new release shows at once) and taken from the
 * copy when there is no answer; its files from the copy first (their version is in the cache's
 * name: a release with other files makes a new cache and drops the old one). The API is
 * never answered from here: what the page sends must reach the server or wait in its outbox. */
/* global SHELL */
"use strict";

var CACHE = "geo-service-phone-" + SHELL.version;

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches
      .open(CACHE)
      .then(function (cache) {
        return cache.addAll(SHELL.files);
      })
      .then(function () {
        return self.skipWaiting();
      })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches
      .keys()
      .then(function (names) {
        return Promise.all(
          names
            .filter(function (name) {
              return name.indexOf("geo-service-phone-") === 0 && name !== CACHE;
            })
            .map(function (name) {
              return caches.delete(name);
            })
        );
      })
      .then(function () {
        return self.clients.claim();
      })
  );
});

function path(url) {
  var u = new URL(url);
  return u.origin === self.location.origin ? u.pathname : null;
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var where = path(request.url);
  if (where === SHELL.page && request.mode === "navigate") {
    // The page: the network's when it answers (kept for next time), else the copy.
    event.respondWith(
      fetch(request)
        .then(function (answer) {
          if (answer.ok) {
            var copy = answer.clone();
            caches.open(CACHE).then(function (cache) {
              cache.put(SHELL.page, copy);
            });
          }
          return answer;
        })
        .catch(function () {
          return caches.match(SHELL.page).then(function (kept) {
            return kept || Response.error();
          });
        })
    );
    return;
  }
  if (where !== null && SHELL.files.indexOf(where) >= 0) {
    event.respondWith(
      caches.match(where).then(function (kept) {
        return kept || fetch(request);
      })
    );
  }
});
