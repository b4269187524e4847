/* The phone page's outbox: actions recorded on the phone (visits, incident steps) kept in
 * IndexedDB (in localStorage where a browser has no IndexedDB) until the server has them.
 *
 * Each action carries the Idempotency-Key made once, when it was queued: sent again after a
 * dropped connection (the server may have stored it and only the answer was lost), it is
 * answered as the first time and never counts twice. The sender sends the actions in the order
 * they were queued (an incident's start before its report): at once, on the browser's `online`
 * event, and after a failure again and again with a growing wait (the Retry-After of a 429 or
 * 503 when it is longer). An answer refusing an action (a 4xx) keeps it, marked failed with the
 * server's message, until the worker discards it; a 401 stops the sender until a new token.
 */
(function (GeoMap, global) {
  "use strict";

  var DB = "geo-service-phone";
  var STORE = "outbox";

  /** A random UUID (v4). crypto.randomUUID needs a secure context; getRandomValues does not. */
  function newKey() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    });
    return [h.slice(0, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10), h.slice(10)]
      .map(function (part) {
        return part.join("");
      })
      .join("-");
  }
  GeoMap.newKey = newKey;

  // -- where the actions are kept ----------------------------------------------------------------
  function idbRequest(req) {
    return new Promise(function (resolve, reject) {
      req.onsuccess = function () {
        resolve(req.result);
      };
      req.onerror = function () {
        reject(req.error);
      };
    });
  }

  function IdbStore(db) {
    this.db = db;
  }
  IdbStore.prototype.run = function (mode, work) {
    var tx = this.db.transaction(STORE, mode);
    var result = work(tx.objectStore(STORE));
    return new Promise(function (resolve, reject) {
      tx.oncomplete = function () {
        Promise.resolve(result).then(resolve, reject);
      };
      tx.onabort = tx.onerror = function () {
        reject(tx.error);
      };
    });
  };
  IdbStore.prototype.all = function () {
    return this.run("readonly", function (s) {
      return idbRequest(s.getAll());
    });
  };
  IdbStore.prototype.add = function (item) {
    return this.run("readwrite", function (s) {
      return idbRequest(s.add(item));
    });
  };
  IdbStore.prototype.put = function (item) {
    return this.run("readwrite", function (s) {
      return idbRequest(s.put(item));
    });
  };
  IdbStore.prototype.remove = function (id) {
    return this.run("readwrite", function (s) {
      return idbRequest(s.delete(id));
    });
  };

  /** The same four calls on localStorage (a browser without IndexedDB, a private window). */
  function LocalStore(name) {
    this.name = name;
  }
  LocalStore.prototype.read = function () {
    try {
      return JSON.parse(localStorage.getItem(this.name) || '{"next":1,"items":[]}');
    } catch (e) {
      return { next: 1, items: [] };
    }
  };
  LocalStore.prototype.write = function (state) {
    localStorage.setItem(this.name, JSON.stringify(state));
  };
  LocalStore.prototype.all = function () {
    return Promise.resolve(this.read().items);
  };
  LocalStore.prototype.add = function (item) {
    var state = this.read();
    item.id = state.next++;
    state.items.push(item);
    this.write(state);
    return Promise.resolve(item.id);
  };
  LocalStore.prototype.put = function (item) {
    var state = this.read();
    state.items = state.items.map(function (i) {
      return i.id === item.id ? item : i;
    });
    this.write(state);
    return Promise.resolve(item.id);
  };
  LocalStore.prototype.remove = function (id) {
    var state = this.read();
    state.items = state.items.filter(function (i) {
      return i.id !== id;
    });
    this.write(state);
    return Promise.resolve();
  };

  function openStore() {
    if (!global.indexedDB) return Promise.resolve(new LocalStore(DB + "." + STORE));
    var req = global.indexedDB.open(DB, 1);
    req.onupgradeneeded = function () {
      req.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    };
    return idbRequest(req).then(
      function (db) {
        return new IdbStore(db);
      },
      function () {
        return new LocalStore(DB + "." + STORE);
      }
    );
  }
  // -- the outbox ------------------------------------------------------------------------------
  /** opts: send(item) -> Promise of the answer (rejects with a GeoMap.ApiError); changed(items)
   * after every change; sent(item, answer) after the server took one; blocked(err) on a 401;
   * retry {firstS, maxS}. */
  function Outbox(opts) {
    this.opts = opts;
    this.items = [];
    this.sending = null;
    this.timer = null;
    this.failures = 0; // sends in a row that got no answer: the wait doubles with each
    this.stopped = false;
    this.nextTry = null; // when the sender tries again (ms since the epoch), while it waits
    var box = this;
    this.ready = openStore().then(function (store) {
      box.store = store;
      return box.reload();
    });
    global.addEventListener("online", function () {
      box.flush();
    });
  }

  Outbox.prototype.reload = function () {
    var box = this;
    return this.store.all().then(function (items) {
      box.items = items.sort(function (a, b) {
        return a.id - b.id;
      });
      box.changed();
      return box.items;
    });
  };

  Outbox.prototype.changed = function () {
    if (this.opts.changed) this.opts.changed(this.items.slice());
  };

  /** Queue an action ({kind, method, path, body, label, ...}): its Idempotency-Key is made
   * now, once; then send what is waiting. Resolves when it is kept on the phone. */
  Outbox.prototype.add = function (action) {
    var box = this;
    var item = Object.assign({}, action, {
      key: newKey(),
      queuedAt: new Date().toISOString(),
      tries: 0,
      state: "waiting",
      error: null,
    });
    return this.ready
      .then(function () {
        return box.store.add(item);
      })
      .then(function (id) {
        item.id = id;
        box.items.push(item);
        box.changed();
        box.flush();
        return item;
      });
  };

  /** Drop an action the server refused (the worker saw why). */
  Outbox.prototype.discard = function (id) {
    var box = this;
    return this.store.remove(id).then(function () {
      box.items = box.items.filter(function (i) {
        return i.id !== id;
      });
      box.changed();
    });
  };

  /** Try again now (the worker asked, or a new token came). */
  Outbox.prototype.retryNow = function () {
    this.stopped = false;
    this.failures = 0;
    this.flush();
  };

  Outbox.prototype.waiting = function () {
    return this.items.filter(function (i) {
      return i.state === "waiting";
    });
  };

  /** Send the waiting actions in order, one at a time; one run at a time. */
  Outbox.prototype.flush = function () {
    var box = this;
    if (this.sending) return this.sending;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.nextTry = null;
    }
    this.sending = this.ready
      .then(function () {
        return box.sendAll();
      })
      .finally(function () {
        box.sending = null;
        box.changed();
      });
    return this.sending;
  };

  Outbox.prototype.sendAll = async function () {
    // The browser knows it has no network: wait for its `online` event rather than try.
    while (!this.stopped && global.navigator.onLine !== false) {
      var item = this.waiting()[0];
      if (!item) return;
      item.tries += 1;
      try {
        var answer = await this.opts.send(item);
        await this.store.remove(item.id);
        this.items = this.items.filter(function (i) {
          return i.id !== item.id;
        });
        this.failures = 0;
        this.changed();
        if (this.opts.sent) this.opts.sent(item, answer);
      } catch (err) {
        var status = err && err.status !== undefined ? err.status : 0;
        item.error = { status: status, message: (err && err.message) || String(err) };
        if (status === 0 || status >= 500 || status === 408 || status === 429) {
          await this.store.put(item);
          this.later(err.retryAfter);
          return;
        }
        if (status === 401) {
          // The token is unknown, expired or revoked: nothing will pass until a new one.
          await this.store.put(item);
          this.stopped = true;
          if (this.opts.blocked) this.opts.blocked(err);
          return;
        }
        item.state = "failed";
        await this.store.put(item);
        this.changed();
      }
    }
  };

  /** Try again after a wait that doubles with each failure in a row (Retry-After if longer). */
  Outbox.prototype.later = function (retryAfter) {
    var retry = this.opts.retry || { firstS: 1, maxS: 60 };
    this.failures += 1;
    var wait = Math.min(retry.maxS, retry.firstS * Math.pow(2, this.failures - 1));
    if (retryAfter) wait = Math.max(wait, retryAfter);
    var box = this;
    this.nextTry = Date.now() + wait * 1000;
    this.timer = setTimeout(function () {
      box.timer = null;
      box.nextTry = null;
      box.flush();
    }, wait * 1000);
  };

  GeoMap.Outbox = Outbox;
})(window.GeoMap, window);
