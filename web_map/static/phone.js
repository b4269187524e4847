/* The grid worker's phone page (/m/): today's work of the signed-in worker.
 *
 * - incidents of their grids, with the workflow's next step they may take (start, report);
 * - campaign visits due, in walking order from where the phone is (the route API), a visit
 *   recorded in two taps: the building, then the outcome;
 * - a building search (the route's buildings at once, the city's when there is a connection).
 *
 * Every action goes through the outbox (outbox.js): kept on the phone with its
 * Idempotency-Key, sent when there is a connection, listed while it waits. What the page last
 * read from the API is kept too (localStorage), so that it opens and works in a stairwell.
 * The token comes once in ?access_token= and is kept on the phone (the installed app opens
 * /m/ without it); ?grid= names the grid for staff who are not held to grids.
 */
(function (GeoMap, global) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var fmt = GeoMap.fmt;
  var KEEP = "geo-service.phone.";
  var OPEN = ["dispatched", "in_progress", "reported"];
  var STATUS = {
    dispatched: ["已派遣", "dispatched"],
    in_progress: ["处理中", "in progress"],
    reported: ["已上报，待核查", "reported, awaiting verification"],
    closed: ["已结案", "closed"],
    cancelled: ["已取消", "cancelled"],
  };
  var STEPS = {
    start: { from: "dispatched", to: "in_progress", zh: "开始处置", en: "Start", note: "网格员到场处置" },
    report: { from: "in_progress", to: "reported", zh: "办结上报", en: "Report done", note: "" },
  };
  var OUTCOMES = [
    ["visited", "已走访", "visited"],
    ["no_one_home", "无人在家", "no one home"],
    ["refused", "拒绝", "refused"],
    ["follow_up", "需跟进", "follow up"],
  ];
  var OUTCOME_NAME = {};
  OUTCOMES.forEach(function (o) {
    OUTCOME_NAME[o[0]] = bi(o[1], o[2]);
  });

  function $(id) {
    return document.getElementById(id);
  }

  function keep(name, value) {
    try {
      localStorage.setItem(KEEP + name, JSON.stringify(value));
    } catch (e) {
      /* full or refused: the page works on without its copy */
    }
  }

  function kept(name) {
    try {
      return JSON.parse(localStorage.getItem(KEEP + name) || "null");
    } catch (e) {
      return null;
    }
  }

  function mark(name, value) {
    document.body.setAttribute("data-phone-" + name, String(value));
    var count = document.getElementById("gp-n-" + name); // the header's count, if it has one
    if (count) count.textContent = String(value);
  }

  // The province, city and district every address of a city begins with: on a phone the
  // road, number, estate and building are what tell one building from the next.
  var ADMIN_PREFIX = /^(?:[\u4e00-\u9fa5]{2,8}?(?:省|自治区))?(?:[\u4e00-\u9fa5]{2,8}?市)?(?:[\u4e00-\u9fa5]{1,8}?(?:区|县))?/;

  /** [what the building is called, where it is] for a list: its name (聚福花园2栋) and its
   * address without the administrative prefix and without the name (湖城四路39号). */
  function place(b) {
    var address = String(b.address || "").replace(ADMIN_PREFIX, "");
    var name = b.name || "";
    if (name && address.slice(-name.length) === name) address = address.slice(0, -name.length);
    return name ? [name, address] : [address || b.building || b.code, ""];
  }

  function metres(m) {
    if (m === null || m === undefined) return "—";
    return m >= 1000 ? (m / 1000).toFixed(1) + " km" : Math.round(m) + " m";
  }

  var SHOWN = 15; // stops listed before "show all": the search stays within reach

  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  /** The token: from the address once (then kept, and taken out of the address bar), else the
   * one kept on the phone. */
  function takeToken() {
    var url = new URL(global.location.href);
    var given = url.searchParams.get("access_token") || url.searchParams.get("token");
    if (given) {
      keep("token", given);
      url.searchParams.delete("access_token");
      url.searchParams.delete("token");
      global.history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    var grid = url.searchParams.get("grid");
    if (grid) keep("grid", grid);
    return given || kept("token");
  }

  function Phone(cfg) {
    this.cfg = cfg;
    this.token = takeToken();
    this.grid = kept("grid");
    this.session = null;
    this.incidents = kept("incidents");
    this.campaigns = kept("campaigns");
    this.route = kept("route");
    this.position = null;
    this.routedFrom = null; // "phone" or "grid": where the last route started
    this.items = [];
  }

  // -- the API ----------------------------------------------------------------------------------
  Phone.prototype.call = function (method, path, body, key) {
    var headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = "Bearer " + this.token;
    if (key) headers["Idempotency-Key"] = key;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return GeoMap.fetchJson(this.cfg.api + path, init);
  };

  Phone.prototype.get = function (path) {
    return this.call("GET", path).then(function (a) {
      return a.body;
    });
  };

  // -- messages ------------------------------------------------------------------------------
  Phone.prototype.say = function (html, kind) {
    var box = $("gp-message");
    box.hidden = !html;
    box.className = "gp-message" + (kind ? " gp-message-" + kind : "");
    box.innerHTML = html || "";
  };

  Phone.prototype.problem = function (err, what) {
    if (err && err.status === 0) {
      return bi("没有网络连接", "No connection") + (what ? ": " + what : "");
    }
    return esc((what ? what + ": " : "") + ((err && err.message) || String(err)));
  };

  Phone.prototype.net = function () {
    var online = global.navigator.onLine;
    var el = $("gp-net");
    el.className = "gp-net " + (online ? "gp-online" : "gp-offline");
    el.innerHTML = online ? bi("在线", "online") : bi("离线", "offline");
    mark("online", online ? "1" : "0");
  };

  // -- who is signed in ------------------------------------------------------------------------
  Phone.prototype.signIn = async function () {
    if (!this.token) {
      this.say(
        bi("请用带令牌的链接打开本页", "Open this page with its link that carries a token") +
          " (<code>/m/?access_token=…</code>)",
        "error"
      );
      return false;
    }
    try {
      this.session = await this.get(this.cfg.session);
      keep("session", this.session);
    } catch (err) {
      if (err.status === 401) {
        this.say(bi("令牌无效或已过期，请重新获取链接", "The token is unknown or expired: ask for a new link") +
          " · " + esc(err.message), "error");
        return false;
      }
      this.session = kept("session");
      if (!this.session) {
        this.say(this.problem(err, "sign in"), "error");
        return false;
      }
    }
    var s = this.session;
    $("gp-who").innerHTML = esc(s.name) + " · " +
      (s.grids ? bi("网格", "grids") + " " + esc(s.grids.join(", ")) : esc(s.role));
    mark("user", s.name);
    return true;
  };

  /** The grids the page works on: a worker's own, else the one ?grid= named. */
  Phone.prototype.grids = function () {
    if (this.session && this.session.grids) return this.session.grids;
    return this.grid ? [this.grid] : [];
  };

  // -- the outbox ------------------------------------------------------------------------------
  Phone.prototype.startOutbox = function () {
    var phone = this;
    this.outbox = new GeoMap.Outbox({
      retry: this.cfg.retry,
      send: function (item) {
        return phone.call(item.method, item.path, item.body, item.key);
      },
      changed: function (items) {
        phone.items = items;
        phone.drawOutbox();
        phone.drawIncidents();
        phone.drawStops();
      },
      sent: function (item, answer) {
        phone.sent(item, answer);
      },
      blocked: function (err) {
        phone.say(bi("令牌无效或已过期：待发送的记录保留在手机上", "The token is unknown or expired: " +
          "what waits to be sent stays on the phone") + " · " + esc(err.message), "error");
      },
    });
    return this.outbox.ready;
  };

  Phone.prototype.queue = function (action) {
    return this.outbox.add(action);
  };

  /** The server took an action: show what it answered; once nothing waits, read again. */
  Phone.prototype.sent = function (item, answer) {
    this.sentCount = (this.sentCount || 0) + 1;
    mark("sent", this.sentCount); // actions the server took since the page opened
    if (item.kind === "incident" && this.incidents) {
      var ref = item.ref;
      this.incidents.items = this.incidents.items.map(function (i) {
        return i.ref === ref ? answer.body : i;
      });
      keep("incidents", this.incidents);
    }
    if (item.kind === "visit" && item.report && answer.body.outcome === "follow_up" && !answer.body.incident_ref) {
      this.queue({
        kind: "visit-incident",
        method: "POST",
        path: "/api/v1/visits/" + answer.body.id + "/incident",
        body: { category: item.report },
        label: bi("事件", "Incident") + " · " + item.label,
      });
    }
    var route = this.route;
    if (item.kind === "visit" && route && answer.body.outcome !== "no_one_home" &&
        item.campaign === route.campaign && item.round === route.round) {
      route.stops = route.stops.filter(function (s) {
        return s.building !== item.building;
      });
      keep("route", route);
    }
    if (!this.outbox.waiting().length) {
      var phone = this;
      clearTimeout(this.refreshTimer);
      this.refreshTimer = setTimeout(function () {
        phone.refresh();
      }, 300);
    }
  };

  Phone.prototype.drawOutbox = function () {
    var items = this.items;
    var waiting = items.filter(function (i) {
      return i.state === "waiting";
    });
    var failed = items.length - waiting.length;
    var badge = $("gp-outbox-badge");
    badge.hidden = !items.length;
    badge.innerHTML = bi("待发送", "to send") + " " + waiting.length + (failed ? " · " + bi("失败", "failed") + " " + failed : "");
    $("gp-outbox").hidden = !items.length;
    mark("outbox", items.length);
    mark("outbox-waiting", waiting.length);
    var next = this.outbox && this.outbox.nextTry;
    $("gp-outbox-list").innerHTML = items
      .map(function (i) {
        var state =
          i.state === "failed"
            ? '<span class="gp-bad">' + bi("被拒绝", "refused") + ": " + esc(i.error ? i.error.message : "") + "</span>"
            : i.tries
              ? '<span class="gp-warn">' + bi("未送达，将重试", "not through yet, will retry") +
                (i.error && i.error.status ? " (" + esc(i.error.status) + ")" : "") + "</span>"
              : '<span class="gp-note">' + bi("等待网络", "waiting for a connection") + "</span>";
        return '<li class="gp-item gp-outbox-item" data-state="' + esc(i.state) + '">' +
          '<div class="gp-item-main">' + i.label + "</div>" +
          '<div class="gp-meta">' + esc(clock(i.queuedAt)) + " · " + state + "</div>" +
          (i.state === "failed"
            ? '<button type="button" class="gp-small" data-discard="' + esc(i.id) + '">' + bi("放弃", "Discard") + "</button>"
            : "") +
          "</li>";
      })
      .join("") +
      (waiting.length
        ? '<li class="gp-item"><button type="button" id="gp-retry" class="gp-small">' + bi("立即重试", "Try now") + "</button>" +
          (next ? ' <span class="gp-note">' + bi("下次重试", "next try") + " " + esc(clock(new Date(next).toISOString())) + "</span>" : "") +
          "</li>"
        : "");
    var phone = this;
    $("gp-outbox-list").querySelectorAll("[data-discard]").forEach(function (b) {
      b.addEventListener("click", function () {
        phone.outbox.discard(Number(b.getAttribute("data-discard")));
      });
    });
    var retry = $("gp-retry");
    if (retry) {
      retry.addEventListener("click", function () {
        phone.outbox.retryNow();
      });
    }
  };

  // -- incidents -------------------------------------------------------------------------------
  Phone.prototype.loadIncidents = async function () {
    var q = OPEN.map(function (s) {
      return "status=" + s;
    });
    if (!(this.session && this.session.grids) && this.grid) q.push("grid=" + encodeURIComponent(this.grid));
    this.incidents = await this.get("/api/v1/incidents?limit=100&" + q.join("&"));
    this.incidents.savedAt = new Date().toISOString();
    keep("incidents", this.incidents);
  };

  /** An incident's status once the actions waiting for it are taken. */
  Phone.prototype.statusOf = function (incident) {
    var status = incident.status;
    var pending = false;
    this.items.forEach(function (i) {
      if (i.kind === "incident" && i.ref === incident.ref && i.state === "waiting") {
        var step = STEPS[i.body.action];
        if (step && step.from === status) {
          status = step.to;
          pending = true;
        }
      }
    });
    return { status: status, pending: pending };
  };

  Phone.prototype.drawIncidents = function () {
    var box = $("gp-incident-list");
    if (!this.incidents || !this.session) return;
    var phone = this;
    var actions = this.session.actions || [];
    var items = this.incidents.items.filter(function (i) {
      return OPEN.indexOf(i.status) >= 0;
    });
    mark("incidents", items.length);
    if (!items.length) {
      box.innerHTML = '<p class="gp-note">' + bi("本网格暂无待处理事件", "No open incidents in your grids") + "</p>";
      return;
    }
    box.innerHTML = '<ol class="gp-list">' + items
      .map(function (i) {
        var now = phone.statusOf(i);
        var st = STATUS[now.status] || [now.status, now.status];
        var next = Object.keys(STEPS).filter(function (a) {
          return STEPS[a].from === now.status && actions.indexOf(a) >= 0;
        })[0];
        return '<li class="gp-item gp-incident' + (i.overdue ? " gp-overdue" : "") + '" data-ref="' + esc(i.ref) + '">' +
          '<div class="gp-item-main"><b>' + esc(i.category_name ? i.category_name.zh || i.category : i.category) + "</b> " +
          '<span class="gp-code">' + esc(i.ref) + "</span></div>" +
          '<div class="gp-text">' + esc(fmt(i.description || i.address)) + "</div>" +
          '<div class="gp-meta">' + bi(st[0], st[1]) + (now.pending ? ' <span class="gp-warn">' + bi("待发送", "to send") + "</span>" : "") +
          " · " + bi("期限", "due") + " " + esc(fmt(i.due_at)) + (i.overdue ? ' <span class="gp-bad">' + bi("已超期", "overdue") + "</span>" : "") +
          " · " + esc(fmt(i.grid_name || i.grid_code)) + "</div>" +
          (next
            ? '<div class="gp-step"><button type="button" class="gp-primary gp-act" data-action="' + next + '">' +
              bi(STEPS[next].zh, STEPS[next].en) + "</button></div>"
            : "") +
          "</li>";
      })
      .join("") + "</ol>" +
      (this.incidents.savedAt ? '<p class="gp-note">' + bi("更新于", "as of") + " " + esc(clock(this.incidents.savedAt)) + "</p>" : "");
    box.querySelectorAll(".gp-act").forEach(function (b) {
      b.addEventListener("click", function () {
        var li = b.closest("[data-ref]");
        phone.step(li, li.getAttribute("data-ref"), b.getAttribute("data-action"));
      });
    });
  };

  /** Take a workflow step: start at once; report after a note (what was done), then confirm. */
  Phone.prototype.step = function (li, ref, action) {
    var phone = this;
    function go(note) {
      return phone.queue({
        kind: "incident",
        ref: ref,
        method: "PATCH",
        path: "/api/v1/incidents/" + encodeURIComponent(ref),
        body: { action: action, actor: phone.session.name, note: note || STEPS[action].note || null },
        label: bi("事件", "Incident") + " " + esc(ref) + " · " + bi(STEPS[action].zh, STEPS[action].en),
      });
    }
    if (action !== "report") return go();
    var form = li.querySelector(".gp-step");
    form.innerHTML = '<label class="gp-label">' + bi("处理情况（可不填）", "What was done (optional)") +
      '<textarea class="gp-note-input" rows="2" maxlength="2000"></textarea></label>' +
      '<div class="gp-row"><button type="button" class="gp-primary gp-confirm">' + bi("确认上报", "Report") +
      '</button><button type="button" class="gp-cancel gp-back">' + bi("取消", "Cancel") + "</button></div>";
    form.querySelector(".gp-confirm").addEventListener("click", function () {
      go(form.querySelector("textarea").value.trim());
    });
    form.querySelector(".gp-back").addEventListener("click", function () {
      phone.drawIncidents();
    });
  };

  // -- campaigns and the walking route ------------------------------------------------------------
  Phone.prototype.loadCampaigns = async function () {
    this.campaigns = await this.get("/api/v1/campaigns");
    keep("campaigns", this.campaigns);
    this.categories = await this.get("/api/v1/incidents/categories");
    keep("categories", this.categories);
  };

  /** Campaigns under way now (else all of them), newest first. */
  Phone.prototype.current = function () {
    var now = Date.now();
    var items = (this.campaigns && this.campaigns.items) || [];
    var open = items.filter(function (c) {
      return new Date(c.starts).getTime() <= now && now <= new Date(c.due).getTime();
    });
    return open.length ? open : items;
  };

  Phone.prototype.drawChoices = function () {
    var campaigns = this.current();
    var select = $("gp-campaign");
    var chosen = kept("campaign");
    if (!campaigns.some(function (c) {
      return c.id === chosen;
    })) chosen = campaigns.length ? campaigns[0].id : null;
    select.innerHTML = campaigns
      .map(function (c) {
        return '<option value="' + esc(c.id) + '"' + (c.id === chosen ? " selected" : "") + ">" + esc(c.name) + "</option>";
      })
      .join("");
    select.hidden = !campaigns.length;
    var campaign = campaigns.filter(function (c) {
      return c.id === chosen;
    })[0];
    var round = Math.min(kept("round") || 1, campaign ? campaign.rounds : 1);
    var rounds = $("gp-round");
    rounds.hidden = !campaign;
    rounds.innerHTML = campaign
      ? Array.from({ length: campaign.rounds }, function (_, i) {
          return '<option value="' + (i + 1) + '"' + (i + 1 === round ? " selected" : "") + ">第" + (i + 1) + "轮 round " + (i + 1) + "</option>";
        }).join("")
      : "";
    this.campaign = campaign || null;
    this.round = round;
    if (!campaign) {
      $("gp-route-note").innerHTML = bi("当前没有您网格的走访任务", "No campaign covers your grids now");
      $("gp-stops").innerHTML = "";
      mark("stops", 0);
    }
  };

  /** Where the route starts: the phone's position, else the first building of the grid. */
  Phone.prototype.start = async function () {
    if (this.position) return { lon: this.position.lon, lat: this.position.lat, from: "phone" };
    var grid = this.grids()[0];
    if (!grid) return null;
    var first = await this.get("/api/v1/buildings?limit=1&grid=" + encodeURIComponent(grid));
    if (!first.items.length) return null;
    return { lon: first.items[0].lon, lat: first.items[0].lat, from: "grid" };
  };

  Phone.prototype.loadRoute = async function () {
    if (!this.campaign) return;
    var start = await this.start();
    if (!start) {
      $("gp-route-note").innerHTML = bi("没有可走访的楼栋", "No building to visit");
      return;
    }
    var q = "round=" + this.round + "&lon=" + start.lon.toFixed(7) + "&lat=" + start.lat.toFixed(7);
    if (!(this.session && this.session.grids) && this.grid) q += "&grid=" + encodeURIComponent(this.grid);
    var route = await this.get("/api/v1/campaigns/" + this.campaign.id + "/route?" + q);
    route.from = start.from;
    route.savedAt = new Date().toISOString();
    this.route = route;
    this.routedFrom = start.from;
    keep("route", route);
  };

  /** A visit waiting in the outbox for this building in the route's campaign and round. */
  Phone.prototype.pendingVisit = function (code) {
    var route = this.route;
    return this.items.filter(function (i) {
      return i.kind === "visit" && i.building === code && route && i.campaign === route.campaign && i.round === route.round;
    }).pop();
  };

  Phone.prototype.drawStops = function () {
    var route = this.route;
    var list = $("gp-stops");
    if (!route || !this.campaign || route.campaign !== this.campaign.id || route.round !== this.round) return;
    var phone = this;
    var note = route.stops.length
      ? bi("待走访", "to visit") + " <b>" + route.stops.length + "</b> · " + bi("步行", "walk") + " " +
        esc(metres(route.walk_m)) + " · " + esc(Math.round(route.minutes)) + " min" +
        (route.from === "grid" ? " · " + bi("未获取定位，从网格第一栋楼排起", "no position yet: from the grid's first building") : " · " + bi("从您的位置排起", "from where you are"))
      : bi("本轮走访已完成", "Every building of this round is done");
    $("gp-route-note").innerHTML = note + (route.savedAt ? " · " + bi("更新于", "as of") + " " + esc(clock(route.savedAt)) : "");
    var shown = this.allStops ? route.stops : route.stops.slice(0, SHOWN);
    list.innerHTML = shown
      .map(function (s) {
        var queued = phone.pendingVisit(s.building);
        var where = place(s);
        return '<li class="gp-stop-item' + (queued ? " gp-done" : "") + '">' +
          '<button type="button" class="gp-stop" data-code="' + esc(s.building) + '">' +
          '<span class="gp-order">' + esc(s.order) + "</span>" +
          '<span class="gp-stop-text"><span class="gp-item-main">' + esc(where[0]) + "</span>" +
          '<span class="gp-meta">' + (where[1] ? esc(where[1]) + " · " : "") + esc(fmt(s.households)) + " " + bi("户", "hh") +
          " · " + esc(metres(s.leg_m)) + (s.tried ? " · " + bi("上次无人", "no one home before") : "") +
          (queued ? " · " + OUTCOME_NAME[queued.body.outcome] + " " + (queued.state === "failed" ? bi("被拒绝", "refused") : bi("待发送", "to send")) : "") +
          "</span></span></button></li>";
      })
      .join("") +
      (shown.length < route.stops.length
        ? '<li class="gp-stop-item"><button type="button" id="gp-all-stops" class="gp-small">' +
          bi("显示全部", "Show all") + " " + route.stops.length + "</button></li>"
        : "");
    mark("stops", route.stops.length);
    mark("route-from", route.from);
    list.querySelectorAll(".gp-stop").forEach(function (b) {
      b.addEventListener("click", function () {
        var code = b.getAttribute("data-code");
        phone.sheet(route.stops.filter(function (s) {
          return s.building === code;
        })[0]);
      });
    });
    var all = $("gp-all-stops");
    if (all) {
      all.addEventListener("click", function () {
        phone.allStops = true;
        phone.drawStops();
      });
    }
  };

  // -- recording a visit: the outcome sheet ------------------------------------------------------
  /** Tap a building: its outcomes (the second tap records the visit). */
  Phone.prototype.sheet = function (building) {
    if (!this.campaign) {
      this.say(bi("请先选择走访任务", "Choose a campaign first"), "error");
      return;
    }
    var phone = this;
    var code = building.building || building.code;
    var where = place(building);
    $("gp-sheet-title").textContent = where[0];
    $("gp-sheet-sub").innerHTML = (where[1] ? esc(where[1]) + "<br>" : "") + esc(this.campaign.name) + " · 第" + this.round + "轮 · " +
      esc(fmt(building.households)) + " " + bi("户", "households") + " · " + esc(code);
    var households = $("gp-households");
    households.value = building.households || 0;
    $("gp-outcomes").innerHTML = OUTCOMES.map(function (o) {
      return '<button type="button" class="gp-outcome gp-outcome-' + o[0] + '" data-outcome="' + o[0] + '">' +
        bi(o[1], o[2]) + "</button>";
    }).join("");
    var follow = $("gp-follow-category");
    var chosen = follow.value;
    follow.innerHTML = '<option value="">' + bi("不上报", "Not reported") + "</option>" +
      (this.categories || kept("categories") || []).map(function (c) {
        return '<option value="' + esc(c.code) + '">' + esc(c.name.zh) + " " + esc(c.name.en) + "</option>";
      }).join("");
    follow.value = chosen; // the last choice stays for the next building
    $("gp-outcomes").querySelectorAll(".gp-outcome").forEach(function (b) {
      b.addEventListener("click", function () {
        var outcome = b.getAttribute("data-outcome");
        phone.visit(code, building, outcome, Number(households.value) || 0,
          outcome === "follow_up" ? follow.value : "");
      });
    });
    $("gp-sheet").hidden = false;
    mark("sheet", code);
  };

  Phone.prototype.closeSheet = function () {
    $("gp-sheet").hidden = true;
    document.body.removeAttribute("data-phone-sheet");
  };

  /** Queue a visit; a follow-up with a category (`report`) becomes an incident once the
   * server holds the visit (sent(): the incident is queued with the visit's id). */
  Phone.prototype.visit = function (code, building, outcome, households, report) {
    if (!this.position) {
      this.say(bi("还没有定位：请允许本页使用位置，稍候再点", "No position yet: allow this page your " +
        "location, then tap again"), "error");
      return;
    }
    var body = {
      campaign: this.campaign.id,
      round: this.round,
      building: code,
      households_reached: outcome === "no_one_home" ? 0 : households,
      outcome: outcome,
      at: new Date().toISOString(),
      lon: Number(this.position.lon.toFixed(7)),
      lat: Number(this.position.lat.toFixed(7)),
    };
    this.closeSheet();
    this.say("");
    return this.queue({
      kind: "visit",
      building: code,
      campaign: body.campaign,
      round: body.round,
      report: report || null,
      method: "POST",
      path: "/api/v1/visits",
      body: body,
      label: bi("走访", "Visit") + " " + esc(place(building)[0]) + " · " + OUTCOME_NAME[outcome] +
        (report ? " · " + bi("上报事件", "reported as an incident") : ""),
    });
  };

  // -- building search --------------------------------------------------------------------------
  Phone.prototype.search = async function (q) {
    var phone = this;
    var mine = this.grids();
    var local = ((this.route && this.route.stops) || []).filter(function (s) {
      return [s.address, s.name, s.building].some(function (t) {
        return t && t.indexOf(q) >= 0;
      });
    }).map(function (s) {
      return { code: s.building, address: s.address, name: s.name, households: s.households, grid_code: s.grid_code };
    });
    var found = local;
    var note = "";
    try {
      var answer = await this.get("/api/v1/buildings?limit=20&q=" + encodeURIComponent(q));
      found = answer.items;
      note = answer.message || "";
    } catch (err) {
      note = (err.status === 0 ? bi("离线：只在待走访楼栋中查找", "Offline: searched the buildings to visit only")
        : this.problem(err, "search"));
    }
    var list = $("gp-found");
    list.innerHTML = found
      .map(function (b, i) {
        var theirs = !mine.length || mine.indexOf(b.grid_code) >= 0;
        var where = place(b);
        return '<li class="gp-stop-item"><button type="button" class="gp-stop" data-i="' + i + '"' + (theirs ? "" : " disabled") + ">" +
          '<span class="gp-stop-text"><span class="gp-item-main">' + esc(where[0]) + "</span>" +
          '<span class="gp-meta">' + (where[1] ? esc(where[1]) + " · " : "") + esc(fmt(b.households)) + " " + bi("户", "hh") + " · " + esc(fmt(b.grid_code)) +
          (theirs ? "" : " · " + bi("不在您的网格", "not in your grids")) + "</span></span></button></li>";
      })
      .join("") + (note || !found.length ? '<li class="gp-note">' + (note || bi("没有找到", "Nothing found")) + "</li>" : "");
    mark("found", found.length);
    list.querySelectorAll(".gp-stop:not([disabled])").forEach(function (b) {
      b.addEventListener("click", function () {
        phone.sheet(found[Number(b.getAttribute("data-i"))]);
      });
    });
  };

  // -- the phone's position ------------------------------------------------------------------------
  Phone.prototype.locate = function () {
    var phone = this;
    if (!global.navigator.geolocation) return;
    global.navigator.geolocation.watchPosition(
      function (pos) {
        var first = !phone.position;
        phone.position = { lon: pos.coords.longitude, lat: pos.coords.latitude, at: pos.timestamp };
        mark("located", "1");
        // The route was ordered from the grid's first building: order it from here now.
        if (first && phone.routedFrom === "grid" && global.navigator.onLine) phone.refreshRoute();
      },
      function (err) {
        mark("located", "0");
        console.warn("geo-service phone: no position:", err.message);
      },
      { enableHighAccuracy: true, maximumAge: 30000, timeout: 20000 }
    );
  };

  // -- reading the API again ----------------------------------------------------------------------
  Phone.prototype.refreshRoute = async function () {
    try {
      await this.loadRoute();
    } catch (err) {
      if (err.status !== 0) this.say(this.problem(err, "route"), "error");
    }
    this.drawStops();
  };

  /** Read incidents, campaigns and the route again; without a connection keep what was kept. */
  Phone.prototype.refresh = async function () {
    var offline = false;
    var phone = this;
    async function read(what, load) {
      try {
        await load.call(phone);
      } catch (err) {
        if (err.status === 0) offline = true;
        else phone.say(phone.problem(err, what), "error");
      }
    }
    await read("incidents", this.loadIncidents);
    this.drawIncidents();
    await read("campaigns", this.loadCampaigns);
    this.drawChoices();
    await read("route", this.loadRoute);
    this.drawStops();
    if (offline) {
      this.say(bi("离线：显示上次保存的内容，记录会在联网后发送", "Offline: showing what was last read; " +
        "what you record is sent when the connection is back"), "warn");
      var nothing = '<p class="gp-note">' + bi("离线，本机还没有保存的内容：联网后会自动读取",
        "Offline, and nothing kept on this phone yet: it is read when the connection is back") + "</p>";
      if (!this.incidents) $("gp-incident-list").innerHTML = nothing;
      if (!this.route && !this.campaigns) $("gp-route-note").innerHTML = nothing;
    }
    return !offline;
  };

  Phone.prototype.wire = function () {
    var phone = this;
    $("gp-campaign").addEventListener("change", function () {
      keep("campaign", Number(this.value));
      phone.drawChoices();
      phone.refreshRoute();
    });
    $("gp-round").addEventListener("change", function () {
      keep("round", Number(this.value));
      phone.drawChoices();
      phone.refreshRoute();
    });
    $("gp-search-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var q = $("gp-q").value.trim();
      if (q) phone.search(q);
    });
    $("gp-sheet-cancel").addEventListener("click", function () {
      phone.closeSheet();
    });
    $("gp-outbox-badge").addEventListener("click", function () {
      $("gp-outbox").scrollIntoView({ behavior: "smooth" });
    });
    global.addEventListener("online", function () {
      phone.net();
      phone.say("");
      // Read again (the outbox sends what waits on its own); not signed in yet: sign in now.
      if (phone.session) phone.refresh();
      else if (phone.outbox) phone.begin();
    });
    global.addEventListener("offline", function () {
      phone.net();
    });
  };

  GeoMap.phone = async function (cfg) {
    var phone = new Phone(cfg);
    GeoMap.phonePage = phone;
    phone.wire();
    phone.net();
    if ("serviceWorker" in global.navigator && cfg.serviceWorker) {
      global.navigator.serviceWorker.register(cfg.serviceWorker, { scope: cfg.page }).catch(function (err) {
        console.warn("geo-service phone: no offline copy of the page:", err.message);
      });
    }
    try {
      await phone.startOutbox();
      await phone.begin();
    } catch (err) {
      phone.say(phone.problem(err), "error");
      console.error("geo-service phone:", err);
    }
    mark("ready", "1");
  };

  /** Sign in (or take the session kept on the phone), then draw what was kept and read the
   * API again. */
  Phone.prototype.begin = async function () {
    if (!(await this.signIn())) return;
    this.locate();
    this.drawIncidents();
    this.drawChoices();
    this.drawStops();
    await this.refresh();
    this.outbox.flush();
  };
})(window.GeoMap, window);
