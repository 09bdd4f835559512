// Progressive enhancement only: every page works without this script.
(function () {
  "use strict";

  document.querySelectorAll("button.print").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  var errors = document.getElementById("errors");
  if (errors) { errors.focus(); }

  // Recording a lab result: offer only the chosen test's units.
  document.querySelectorAll("select[data-unit-select]").forEach(function (tests) {
    var units = document.getElementById(tests.getAttribute("data-unit-select"));
    if (!units) { return; }
    // Only the chosen test's units are offered, and none is chosen for the user: a unit
    // picked by default turned 180 pmol/L into 133 (ng/L read as pmol/L). A test with a
    // single unit (or none) has nothing to choose.
    var placeholder = units.querySelector("option[data-placeholder]");
    function limit(keep) {
      var chosen = null;
      Array.prototype.forEach.call(units.querySelectorAll("optgroup"), function (group) {
        var match = group.getAttribute("data-test") === tests.value;
        group.hidden = !match;
        group.disabled = !match;
        if (match) {
          var options = group.querySelectorAll("option");
          var selected = group.querySelector("option:checked");
          chosen = keep && selected ? selected : (options.length === 1 ? options[0] : placeholder);
        }
      });
      if (chosen) { chosen.selected = true; }
    }
    tests.addEventListener("change", function () { limit(false); });
    limit(true);
  });

  // The clinician form: symptoms are added by name (type-ahead); only those added are
  // listed, each with its details. Without this script every symptom is listed.
  var picker = document.querySelector(".symptom-picker");
  if (picker) {
    var rows = Array.prototype.slice.call(picker.querySelectorAll("tr[data-symptom]"));
    var search = picker.querySelector("#symptom-search");
    var table = picker.querySelector("table.symptoms");
    var sync = function () {
      rows.forEach(function (row) {
        row.hidden = !row.querySelector("input[type=checkbox]").checked;
      });
      table.hidden = rows.every(function (row) { return row.hidden; });
    };
    var status = picker.querySelector("#symptom-search-status");
    var names = function (r) {
      return [r.getAttribute("data-name"), r.getAttribute("data-lay")].map(function (n) {
        return n.toLowerCase();
      });
    };
    var add = function () {
      var wanted = search.value.trim().toLowerCase();
      if (!wanted) { return; }
      // The clinical or plain name exactly, else the one symptom whose names contain it.
      var found = rows.filter(function (r) { return names(r).indexOf(wanted) >= 0; });
      if (found.length !== 1) {
        found = rows.filter(function (r) {
          return names(r).some(function (n) { return n.indexOf(wanted) >= 0; });
        });
      }
      if (found.length !== 1) {
        status.textContent = found.length
          ? found.length + " symptoms match \u201c" + search.value.trim() + "\u201d: pick one from the list."
          : "No symptom matches \u201c" + search.value.trim() + "\u201d.";
        return;
      }
      var row = found[0];
      status.textContent = row.getAttribute("data-name") + " added.";
      row.querySelector("input[type=checkbox]").checked = true;
      sync();
      search.value = "";
      row.querySelector("select").focus();
    };
    picker.querySelector(".picker").hidden = false;
    search.addEventListener("change", add);
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); add(); }
    });
    sync();
  }

  // The patient check: one step at a time, each its own history entry (the phone's back
  // gesture goes back one step), Back, a progress line with the step's name, Enter moves
  // on, an explicit answer where one is needed, and after each step the server is asked
  // whether the answers so far already make an emergency (then the check stops there).
  var form = document.querySelector("form.stepper");
  if (!form) { return; }
  var steps = Array.prototype.slice.call(form.querySelectorAll("fieldset.step"));
  var back = form.querySelector("button.back-link");
  var next = form.querySelector("button.next");
  var submit = form.querySelector("button[type=submit]");
  var progress = form.querySelector(".progress");
  var current = Math.min(parseInt(form.getAttribute("data-start-step") || "0", 10) || 0,
                         steps.length - 1);

  function answered(step) {
    return !step.hasAttribute("data-needs-answer") ||
      step.querySelector("input:checked") !== null;
  }

  function show(index, focus) {
    current = index;
    steps.forEach(function (step, i) { step.hidden = i !== index; });
    back.hidden = index === 0;
    next.hidden = index === steps.length - 1;
    submit.hidden = index !== steps.length - 1;
    next.disabled = !answered(steps[index]);
    progress.hidden = false;
    progress.textContent = "Step " + (index + 1) + " of " + steps.length + ": " +
      steps[index].getAttribute("data-step-name");
    if (focus) {
      var heading = steps[index].querySelector("h2");
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  function go(index) {
    show(index, true);
    history.pushState({ checkStep: index }, "", "#step-" + (index + 1));
  }

  window.addEventListener("popstate", function (event) {
    var state = event.state;
    show(state && typeof state.checkStep === "number" ? state.checkStep : 0, true);
  });

  // "None of these" leaves out every other answer of its step, and the other way round.
  steps.forEach(function (step) {
    var none = step.querySelector("input[data-exclusive]");
    step.addEventListener("change", function (event) {
      var box = event.target;
      if (none && box.type === "checkbox" && box.checked) {
        if (box === none) {
          step.querySelectorAll("input[type=checkbox]").forEach(function (other) {
            if (other !== none) { other.checked = false; }
          });
        } else if (!box.closest(".sub")) {
          none.checked = false;
        }
      }
      if (step === steps[current]) { next.disabled = !answered(step); }
    });
  });

  function triage() {
    // The server's engine decides; a failure to ask it is not an answer, so the check
    // goes on and the server asks again when the answers are sent.
    return fetch(form.getAttribute("data-triage"), { method: "POST", body: new FormData(form) })
      .then(function (response) { return response.ok ? response.json() : { emergency: false }; })
      .catch(function () { return { emergency: false }; });
  }

  next.addEventListener("click", function () {
    if (!answered(steps[current])) { return; }
    next.disabled = true;
    triage().then(function (result) {
      next.disabled = false;
      if (result.emergency) { form.submit(); return; }
      go(Math.min(current + 1, steps.length - 1));
    });
  });
  back.addEventListener("click", function () { history.back(); });

  // Enter (or a phone's Go key) in a text box moves to the next step, as Next does; on
  // the last step it sends the answers to be checked.
  form.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || target.tagName !== "INPUT" ||
        target.type === "checkbox" || target.type === "radio") { return; }
    if (current < steps.length - 1) {
      event.preventDefault();
      next.click();
    }
  });

  // An error summary's link shows the step that holds its answer, then goes to it.
  document.querySelectorAll(".error-summary a[href^='#']").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var target = document.getElementById(link.getAttribute("href").slice(1));
      if (!target) { return; }
      event.preventDefault();
      steps.forEach(function (step, i) { if (step.contains(target)) { show(i, false); } });
      target.focus();
    });
  });

  history.replaceState({ checkStep: current }, "", "#step-" + (current + 1));
  // The error summary keeps the focus when there is one (it is announced first).
  show(current, current > 0 && !errors);
})();
