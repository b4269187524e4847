/* The residents' grid notice (网格信息公示, /find): an address, or the phone's position, asked
 * of GET /api/v1/public/grid; the answer shown as a notice board does: the grid, the community,
 * the grid workers (only what the city publishes of them), the nearest neighbourhood centre
 * with its walking minutes, and how to report a problem. A small map shows the grid's outline
 * and the centre (the public grids and centres layers), when those layers answer. Anonymous;
 * the API allows a few lookups a minute per address, and the page says when to try again. */
(function (GeoMap, global) {
  "use strict";

  var bi = GeoMap.bi;
  var esc = GeoMap.esc;
  var fmt = GeoMap.fmt;
  // How to report, by the keys of the notice's `report` (the rest are shown by their key).
  var REPORT = {
    incidents: ["网上报事", "Report a problem online"],
    open311: ["Open311 报事接口", "Open311 (GeoReport v2) clients"],
    categories: ["问题类别", "Kinds of problem"],
  };

  function $(id) {
    return document.getElementById(id);
  }

  function mark(name, value) {
    if (value === null) document.body.removeAttribute("data-find-" + name);
    else document.body.setAttribute("data-find-" + name, String(value));
  }

  /** Whole walking minutes (at least 1), or a dash when the walk is not known. */
  function minutes(value) {
    return value === null || value === undefined ? "—" : String(Math.max(1, Math.round(value)));
  }

  function Find(cfg) {
    this.cfg = cfg;
    this.map = null;
    this.overlay = null;
    this.wait = null; // the countdown after a 429
  }

  Find.prototype.say = function (html, kind) {
    var box = $("gp-message");
    box.hidden = !html;
    box.className = "gp-message" + (kind ? " gp-message-" + kind : "");
    box.innerHTML = html || "";
  };

  Find.prototype.busy = function (on) {
    $("gp-search").disabled = on || !!this.wait;
    $("gp-locate").disabled = on || !!this.wait;
    mark("busy", on ? "1" : null);
  };

  /** Ask the notice for an address or a point (query parameters). */
  Find.prototype.ask = function (params) {
    var page = this;
    this.busy(true);
    this.say(bi("查询中…", "Looking up…"));
    mark("error", null);
    return GeoMap.fetchJson(this.cfg.api + this.cfg.notice + "?" + new URLSearchParams(params), {
      headers: { Accept: "application/json" },
    })
      .then(function (answer) {
        page.say("");
        return page.show(answer.body);
      })
      .catch(function (err) {
        page.failed(err);
      })
      .finally(function () {
        page.busy(false);
        mark("done", Number(document.body.getAttribute("data-find-done") || 0) + 1);
      });
  };

  Find.prototype.failed = function (err) {
    if (!(err instanceof GeoMap.ApiError)) {
      console.error("geo-service find:", err);
      err = new GeoMap.ApiError(-1, String(err), "");
    }
    $("gp-result").hidden = true;
    $("gp-report").hidden = true;
    $("gp-map").hidden = true;
    mark("result", null);
    mark("error", err.status);
    if (err.status === 0) {
      this.say(bi("网络连接失败，请检查网络后重试", "No connection: check your network and try again"), "error");
    } else if (err.status === 404) {
      this.say(bi("没有找到对应的网格", "No grid found for that place") + ": " + esc(err.message) + "<br>" +
        bi("请核对地址（路名、门牌号、小区、楼号），或使用当前位置", "check the address (road, number, estate, " +
        "building) or use your location"), "warn");
    } else if (err.status === 429) {
      this.cooldown(err.retryAfter || 60);
    } else if (err.status === 422) {
      this.say(bi("输入有误", "Please check what you typed") + ": " + esc(err.message), "warn");
    } else {
      this.say(bi("服务暂时不可用，请稍后再试", "The service is unavailable: try again later") + " (" +
        esc(err.status) + " " + esc(err.message) + ")", "error");
    }
  };

  /** Too many lookups from this address: say when to try again, and count down to it. */
  Find.prototype.cooldown = function (seconds) {
    var page = this;
    var until = Date.now() + seconds * 1000;
    mark("retry-after", seconds);
    clearInterval(this.wait);
    function tick() {
      var left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      if (!left) {
        clearInterval(page.wait);
        page.wait = null;
        page.busy(false);
        page.say(bi("可以再次查询了", "You can look up again"), "ok");
        return;
      }
      page.say(bi("查询过于频繁，请在 " + left + " 秒后重试", "Too many lookups: try again in " + left + " s"), "warn");
    }
    this.wait = setInterval(tick, 1000);
    tick();
  };

  Find.prototype.show = function (a) {
    var rows = [];
    var found = a.found_by || {};
    var how = found.address
      ? esc(found.address) + " · " + GeoMap.matchLabel(found.match_type) +
        (found.confidence !== undefined && found.confidence !== null ? " · " + esc(GeoMap.pct(found.confidence)) : "")
      : bi("您的位置", "your location") + " " + esc(fmt(Number(a.lon).toFixed(5))) + ", " + esc(fmt(Number(a.lat).toFixed(5)));
    var workers = (a.workers || []).map(function (w) {
      var phone = w.phone ? ' <a class="gp-tel" href="tel:' + esc(w.phone) + '">' + esc(w.phone) + "</a>" : "";
      return '<li class="gp-worker"><b>' + esc(fmt(w.name)) + "</b>" + (w.code ? ' <span class="gp-code">' + esc(w.code) + "</span>" : "") + phone + "</li>";
    });
    var centre = a.nearest_center;
    rows.push('<div class="gp-grid-name">' + esc(fmt(a.grid.name)) + ' <span class="gp-code">' + esc(a.grid.code) + "</span></div>");
    rows.push('<dl class="gp-facts">' +
      "<dt>" + bi("社区", "Community") + "</dt><dd>" + esc(fmt(a.community.name)) + ' <span class="gp-code">' + esc(fmt(a.community.code)) + "</span></dd>" +
      "<dt>" + bi("网格员", "Grid workers") + "</dt><dd>" + (workers.length ? '<ul class="gp-workers">' + workers.join("") + "</ul>"
        : bi("暂未配备", "none assigned yet")) + "</dd>" +
      "<dt>" + bi("最近的邻里中心", "Nearest neighbourhood centre") + "</dt><dd>" + (centre
        ? "<b>" + esc(fmt(centre.name)) + "</b><br>" + bi("步行约", "about") + " <b>" + esc(minutes(centre.walk_minutes)) + "</b> " +
          bi("分钟", "min walk") + " (" + esc(fmt(centre.walk_m === null ? null : Math.round(centre.walk_m))) + " m)"
        : bi("暂无步行数据", "no walking figures yet")) + "</dd>" +
      "<dt>" + bi("查询依据", "Found by") + "</dt><dd>" + how + "</dd></dl>");
    var result = $("gp-result");
    result.innerHTML = '<h2>' + bi("您所在的网格", "Your grid") + "</h2>" + rows.join("");
    result.hidden = false;
    this.showReport(a.report || {});
    mark("result", a.grid.code);
    mark("workers", (a.workers || []).length);
    return this.showMap(a);
  };

  Find.prototype.showReport = function (report) {
    var api = this.cfg.api;
    var items = Object.keys(report).map(function (key) {
      var text = String(report[key]);
      var label = REPORT[key] || [key, key];
      var m = /^GET (\/\S+)(.*)$/.exec(text);
      var how = m ? '<a href="' + esc(api + m[1]) + '"><code>' + esc(m[1]) + "</code></a>" + esc(m[2])
        : "<code>" + esc(text) + "</code>";
      return "<li><b>" + bi(label[0], label[1]) + "</b><br>" + how + "</li>";
    });
    var box = $("gp-report");
    box.innerHTML = "<h2>" + bi("如何反映问题", "How to report a problem") + "</h2>" +
      '<p class="gp-note">' + bi("发现问题可联系网格员，或通过以下方式报事：", "Tell your grid worker, or report it here:") +
      '</p><ul class="gp-report">' + items.join("") + "</ul>";
    box.hidden = !items.length;
  };

  /** The small map: the place, the grid's outline and the centre, each when it is known. */
  Find.prototype.showMap = async function (a) {
    var box = $("gp-map");
    box.hidden = false;
    var cfg = this.cfg;
    var shift = cfg.basemap.crs === "gcj02";
    function latLng(lon, lat) {
      var p = shift ? GeoMap.wgs84ToGcj02(lon, lat) : [lon, lat];
      return L.latLng(p[1], p[0]);
    }
    if (!this.map) {
      this.map = L.map(box, { zoomSnap: 0.25, scrollWheelZoom: false });
      var tiles = cfg.basemap.tiles;
      if (tiles) {
        L.tileLayer(tiles.url, {
          attribution: tiles.attribution,
          subdomains: tiles.subdomains || "abc",
          maxNativeZoom: tiles.maxZoom,
          maxZoom: 20,
        }).addTo(this.map);
      }
      if (cfg.basemap.labels) {
        var labels = cfg.basemap.labels;
        L.tileLayer(labels.url, { subdomains: labels.subdomains, maxNativeZoom: labels.maxZoom, maxZoom: 20 }).addTo(this.map);
      }
      this.overlay = L.featureGroup().addTo(this.map);
    }
    var map = this.map;
    var overlay = this.overlay;
    overlay.clearLayers();
    map.invalidateSize();
    var here = latLng(a.lon, a.lat);
    L.circleMarker(here, { radius: 8, color: "#ffffff", weight: 2, fillColor: "#1f5fa8", fillOpacity: 1 })
      .bindTooltip(bi("查询位置", "The place you asked about"))
      .addTo(overlay);
    map.setView(here, 16);
    var drawn = [];
    var get = function (path) {
      return GeoMap.fetchJson(cfg.api + path, { headers: { Accept: "application/geo+json, application/json" } }).then(
        function (r) {
          return r.body;
        }
      );
    };
    try {
      var grid = await get(cfg.grid + encodeURIComponent(a.grid.code));
      var outline = L.geoJSON(grid, {
        coordsToLatLng: function (c) {
          return latLng(c[0], c[1]);
        },
        style: { color: "#1f5fa8", weight: 3, fillColor: "#1f5fa8", fillOpacity: 0.08 },
        interactive: false,
      }).addTo(overlay);
      drawn.push("grid");
      map.fitBounds(outline.getBounds(), { padding: [16, 16], maxZoom: 17 });
    } catch (err) {
      // The city does not publish its grids layer to anonymous callers: the point alone.
      console.info("geo-service find: no grid outline:", err.message);
    }
    if (a.nearest_center) {
      try {
        var centre = await get(cfg.center + encodeURIComponent(a.nearest_center.code));
        var c = centre.geometry.coordinates;
        L.circleMarker(latLng(c[0], c[1]), { radius: 7, color: "#d62728", weight: 2, fillColor: "#ff9896", fillOpacity: 0.9 })
          .bindTooltip(esc(a.nearest_center.name) + " · " + esc(minutes(a.nearest_center.walk_minutes)) + " min", { permanent: true, direction: "top" })
          .addTo(overlay);
        drawn.push("center");
      } catch (err) {
        console.info("geo-service find: no centre on the map:", err.message);
      }
    }
    if (drawn.length) {
      // The place, the grid and the centre (often outside the grid) all in view.
      // (More room at the bottom: the attribution line sits there.)
      map.fitBounds(overlay.getBounds(), { paddingTopLeft: [28, 36], paddingBottomRight: [28, 44], maxZoom: 17 });
    }
    mark("map", drawn.join(",") || "point");
  };

  Find.prototype.locate = function () {
    var page = this;
    if (!global.navigator.geolocation) {
      this.say(bi("此浏览器不能定位，请输入地址", "This browser cannot locate you: type your address"), "warn");
      return;
    }
    this.busy(true);
    this.say(bi("定位中…", "Finding where you are…"));
    global.navigator.geolocation.getCurrentPosition(
      function (pos) {
        page.ask({ lon: pos.coords.longitude.toFixed(7), lat: pos.coords.latitude.toFixed(7) });
      },
      function (err) {
        page.busy(false);
        mark("error", "location");
        page.say(bi("无法获取您的位置，请输入地址", "Your location is not available: type your address") +
          " (" + esc(err.message) + ")", "warn");
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  };

  GeoMap.find = function (cfg) {
    var page = new Find(cfg);
    GeoMap.findPage = page;
    $("gp-find-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var address = $("gp-address").value.trim();
      if (!address) {
        page.say(bi("请输入住址", "Type your address"), "warn");
        $("gp-address").focus();
        return;
      }
      page.ask({ address: address });
    });
    $("gp-locate").addEventListener("click", function () {
      page.locate();
    });
    var given = new URLSearchParams(global.location.search).get("address");
    if (given) {
      $("gp-address").value = given;
      page.ask({ address: given });
    }
    mark("ready", "1");
    return page;
  };
})(window.GeoMap, window);
