/*! clickstream.js: a dependency-free browser tracker for the clickstream ingest API (event contract v1).
 * <script>window.clickstreamConfig = {endpoint: "https://API/clickstream"}</script>
 * <script src="/static/clickstream.js" defer></script>   (or data-endpoint="..." on this tag)
 * Events are posted as {"events": [...]} in batches; a batch stays in localStorage until the API answers 2xx.
 * Signed in (idToken / setIdToken), batches go to the authorized route with the ID token. An event is never lost
 * to a 401 there: the batch stays queued with its event ids, onTokenExpired() (the page's; it returns a fresh
 * token, or a promise of one) is asked once and the batch retried with the new token; with none (signed out)
 * its events are sent on the anonymous route, their signed-in state unknown (null). */
(function (w, d) {
  'use strict';
  if (w.clickstream) return;
  var tag = d.currentScript;
  var cfg = Object.assign({
    endpoint: tag && tag.getAttribute('data-endpoint'),
    authEndpoint: null,        // signed-in batches (with the ID token); default: endpoint + "/user"
    batchSize: 20,             // flush when this many events wait
    flushInterval: 5000,       // ms between flushes of a smaller queue
    maxQueue: 1000,            // the offline queue keeps the newest events
    retryBase: 1000,           // first retry delay in ms, doubled per failure up to retryMax
    retryMax: 60000,
    sessionTimeout: 1800000,   // 30 minutes of inactivity end a session
    consent: true,             // default before setConsent is called; Do-Not-Track always wins
    autoPageView: true,
    idToken: null,             // a signed-in page's Cognito ID token (or setIdToken later)
    onTokenExpired: null,      // function () -> a fresh ID token, a promise of one, or null when signed out
    storagePrefix: 'clickstream.'
  }, w.clickstreamConfig);
  var HELPERS = 'product_list_view product_view search add_to_cart remove_from_cart begin_checkout purchase login logout sign_up';
  var UTM = ['source', 'medium', 'campaign', 'term', 'content'];
  var memory = {}, acked = {};
  var idToken = cfg.idToken || null, inflight = null, failures = 0, retryTimer = null, lastUrl = null, renewed = null;

  // localStorage, or this page's memory where storage is refused or full; an unreadable value reads as none.
  function load(key) {
    try {
      var text = key in memory ? memory[key] : localStorage.getItem(cfg.storagePrefix + key);
      return text == null ? null : JSON.parse(text);
    } catch (e) { return null; }
  }
  function save(key, value) {
    var text = value == null ? null : JSON.stringify(value);
    try {
      if (text == null) localStorage.removeItem(cfg.storagePrefix + key); else localStorage.setItem(cfg.storagePrefix + key, text);
      delete memory[key];
    } catch (e) { memory[key] = text; }
  }
  function queued() { return (load('queue') || []).filter(function (e) { return !acked[e.event_id]; }); }
  function uuid() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16)), h = [];
    b[6] = b[6] & 15 | 64; b[8] = b[8] & 63 | 128;
    for (var i = 0; i < 16; i++) h.push((b[i] + 256).toString(16).slice(1) + ([3, 5, 7, 9].indexOf(i) >= 0 ? '-' : ''));
    return h.join('');
  }
  function now() { return new Date().toISOString(); }
  function money(amount) { return amount == null ? null : typeof amount === 'number' ? amount.toFixed(2) : String(amount); }

  function doNotTrack() {
    return [navigator.doNotTrack, w.doNotTrack, navigator.msDoNotTrack].indexOf('1') >= 0 || navigator.globalPrivacyControl === true;
  }
  function allowed() {
    var choice = load('consent');
    return !doNotTrack() && (choice == null ? cfg.consent : choice);
  }
  function clientId() {
    if (!allowed()) return null;
    var id = load('client_id');
    if (!id) save('client_id', id = uuid());
    return id;
  }
  // The session lasts while events come less than sessionTimeout apart; it carries the UTM of its landing page.
  function session(touch) {
    if (!allowed()) return null;
    var s = load('session'), t = Date.now(), utm = utmOf(location.search);
    if (!s || t - s.last > cfg.sessionTimeout) s = {id: uuid(), utm: null};
    if (utm) s.utm = utm;
    if (touch || !s.last) { s.last = t; save('session', s); }
    return s;
  }
  function utmOf(search) {
    var params = new URLSearchParams(search), utm = null;
    UTM.forEach(function (k) { var v = params.get('utm_' + k); if (v) (utm = utm || {})[k] = v.slice(0, 256); });
    return utm;
  }

  function track(name, fields) {
    if (!allowed()) return null;
    var s = session(true), event = {
      event_id: uuid(), event_name: name, client_ts: now(), client_id: clientId(), session_id: s.id,
      user_login_state: idToken ? 'logged_in' : 'anonymous', page_url: location.href.slice(0, 2048),
      referrer: d.referrer ? d.referrer.slice(0, 2048) : null, utm: s.utm
    };
    fields = fields || {};
    for (var k in fields) if (fields[k] !== undefined) event[k] = fields[k];
    if (event.product) event.product = productOf(event.product);
    if ('value' in event) event.value = money(event.value);
    var queue = queued().concat([event]);
    save('queue', queue.slice(-cfg.maxQueue));
    if (queue.length >= cfg.batchSize) flush();
    return event.event_id;
  }
  function productOf(p) {
    var out = {};
    for (var k in p) out[k] = k === 'price' || k === 'discount_price' ? money(p[k]) : p[k];
    out.id = String(p.id);
    return out;
  }
  function withProperties(fields, properties) {
    fields = Object.assign({}, fields);
    fields.properties = Object.assign(properties, fields.properties);
    return fields;
  }

  // The next batch: the oldest events that share a signed-in state, which each event took when it was queued.
  function nextBatch() {
    var queue = queued(), batch = [];
    while (batch.length < Math.min(cfg.batchSize, queue.length) && signedIn(queue[batch.length]) === signedIn(queue[0]))
      batch.push(queue[batch.length]);
    return batch;
  }
  function signedIn(e) { return e.user_login_state === 'logged_in'; }
  // Events queued signed in go to the authorized route with the token; the others never carry it.
  function target(batch) {
    var token = batch.length && signedIn(batch[0]) ? idToken : null;
    var url = token ? cfg.authEndpoint || cfg.endpoint + '/user' : cfg.endpoint;
    var headers = {'content-type': 'text/plain;charset=UTF-8'};  // a CORS-simple request: no preflight
    if (token) headers.authorization = 'Bearer ' + token;
    return {url: url, headers: headers};
  }
  function body(batch) {
    var sent = now();
    return JSON.stringify({events: batch.map(function (e) { return Object.assign({}, e, {sent_ts: sent}); })});
  }
  function forget(batch) {
    batch.forEach(function (e) { acked[e.event_id] = 1; });
    save('queue', queued());
  }

  // A 401 on the authorized route: the batch stays queued. A fresh token from the page (asked once per batch)
  // retries it; without one the events lose their signed-in state and go to the anonymous route.
  function renew(batch) {
    var first = batch[0].event_id, ask = renewed !== first && cfg.onTokenExpired;
    renewed = first;
    return Promise.resolve(ask && ask()).catch(function () { return null; }).then(function (token) {
      idToken = token || null;
      if (idToken) return;
      var ids = {};
      batch.forEach(function (e) { ids[e.event_id] = 1; });
      save('queue', queued().map(function (e) { return ids[e.event_id] ? Object.assign(e, {user_login_state: null}) : e; }));
    });
  }

  // Sends the queue batch by batch; a batch answered 2xx is forgotten (never sent again); after a network error,
  // 408, 429 or 5xx it stays queued, with the same event ids, and is retried after a growing delay; a 401 on the
  // authorized route renews the token (renew); any other answer drops it: resending cannot change it. The
  // promise settles when the queue is empty or waits for a retry.
  function flush() {
    if (inflight) return inflight;
    var batch = nextBatch();
    if (retryTimer || !batch.length || !cfg.endpoint || !allowed()) return Promise.resolve();
    var t = target(batch);
    return inflight = fetch(t.url, {method: 'POST', headers: t.headers, body: body(batch), keepalive: true, credentials: 'omit'})
      .then(function (response) {
        var status = response.status;
        if (status === 401 && t.headers.authorization) return renew(batch);
        if (status < 500 && status !== 408 && status !== 429) {
          failures = 0;
          forget(batch);
        } else throw status;
      })
      .catch(function () {
        var delay = Math.min(cfg.retryMax, cfg.retryBase * Math.pow(2, failures++)) * (0.75 + Math.random() / 2);
        retryTimer = setTimeout(function () { retryTimer = null; flush(); }, delay);
      })
      .then(function () {
        inflight = null;
        if (!retryTimer && queued().length) return flush();
      });
  }
  // The page may not come back: hand what is queued to the browser, which sends it even once the page is gone
  // (sendBeacon; a keepalive fetch when the token is needed). A handed-off batch is forgotten, as the browser owns
  // it now; a page still here to hear the fetch fail queues it again. A token about to expire is not used for it:
  // the batch stays queued for the next page, which renews the token first.
  function flushOnHide() {
    var batch = nextBatch();
    if (!batch.length || !cfg.endpoint || !navigator.onLine || !allowed() || inflight) return;
    var t = target(batch);
    if (!t.headers.authorization) {
      if (navigator.sendBeacon && navigator.sendBeacon(t.url, body(batch))) forget(batch);
    } else if (secondsLeft(idToken) > 60) {
      forget(batch);
      inflight = fetch(t.url, {method: 'POST', headers: t.headers, body: body(batch), keepalive: true, credentials: 'omit'})
        .then(function (response) { if (response.status >= 500 || [401, 408, 429].indexOf(response.status) >= 0) throw 0; })
        .catch(function () {
          batch.forEach(function (e) { delete acked[e.event_id]; });
          save('queue', batch.concat(queued()).slice(-cfg.maxQueue));
        })
        .then(function () { inflight = null; });
    }
  }
  function secondsLeft(token) {
    try {
      return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp - Date.now() / 1000;
    } catch (e) { return 0; }
  }
  function retryNow() {
    clearTimeout(retryTimer);
    retryTimer = null;
    failures = 0;
    return flush();
  }

  function pageView() {
    if (location.href === lastUrl) return;
    var fields = lastUrl ? {referrer: lastUrl} : {};  // in a single-page app the previous URL is the referrer
    lastUrl = location.href;
    track('page_view', fields);
  }

  var api = {
    track: track,
    flush: retryNow,
    setConsent: function (yes) {
      save('consent', !!yes);
      if (!yes) ['queue', 'session', 'client_id'].forEach(function (k) { save(k, null); });
    },
    setIdToken: function (token) { idToken = token || null; },
    product_list_view: function (category, fields) { return track('product_list_view', withProperties(fields, {category: category})); },
    product_view: function (product, fields) { return track('product_view', Object.assign({product: product}, fields)); },
    search: function (query, fields) { return track('search', withProperties(fields, {query: query})); },
    add_to_cart: function (product, quantity, fields) { return track('add_to_cart', Object.assign({product: product, quantity: quantity || 1}, fields)); },
    remove_from_cart: function (product, quantity, fields) { return track('remove_from_cart', Object.assign({product: product, quantity: quantity || 1}, fields)); },
    purchase: function (orderId, value, currency, fields) {
      return track('purchase', Object.assign({order_id: String(orderId), value: money(value), currency: currency}, fields));
    }
  };
  HELPERS.split(' ').forEach(function (name) { api[name] = api[name] || function (fields) { return track(name, fields); }; });
  Object.defineProperty(api, 'clientId', {get: clientId});
  Object.defineProperty(api, 'sessionId', {get: function () { var s = session(false); return s && s.id; }});
  w.clickstream = api;

  if (cfg.autoPageView) {
    var push = history.pushState;
    history.pushState = function () {
      var result = push.apply(this, arguments);
      pageView();
      return result;
    };
    w.addEventListener('popstate', pageView);
    pageView();
  }
  setInterval(flush, cfg.flushInterval);
  w.addEventListener('online', retryNow);
  w.addEventListener('pagehide', flushOnHide);
  d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') flushOnHide(); });
})(window, document);
