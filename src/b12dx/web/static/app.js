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

  // The clinician form: what is sent is what is shown. A browser that restores the form
  // (Back from the result) ticks the symptoms again after this script first ran, so the
  // rows of ticked symptoms are shown again once the page is shown.
  function showTickedSymptoms() {
    var found = document.querySelector(".symptom-picker table.symptoms");
    if (!found) { return; }
    var ticked = 0;
    found.querySelectorAll("tr[data-symptom]").forEach(function (row) {
      var box = row.querySelector("input[type=checkbox]");
      row.hidden = !box.checked;
      if (box.checked) { ticked += 1; }
    });
    found.hidden = ticked === 0;
  }
  window.addEventListener("pageshow", showTickedSymptoms);

  // The clinician's result: "Copy for the notes" puts the text shown under "Text for
  // the notes" on the clipboard; without clipboard access the button stays hidden and
  // the text is there to select.
  function copyForTheNotes(button) {
    var text = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.querySelector(".copy-status");
    navigator.clipboard.writeText(text.textContent).then(function () {
      status.textContent = "Copied: paste it into the notes.";
    }, function () {
      status.textContent = "Could not copy: open \u201cText for the notes\u201d and copy it.";
    });
  }
  if (navigator.clipboard && window.isSecureContext) {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copyForTheNotes(button); });
    });
  }

  // The patient check: one step at a time, each its own history entry (the phone's back
  // gesture goes back one step), Back, a progress line with the step's name, Enter moves
  // on, an explicit answer where one is needed, and after each step the server is asked
  // whether the answers so far already make an emergency (then the check stops there).
  // Only the steps the answers call for are asked: the body areas chosen, questions for
  // the person's age and sex. What is not asked is not sent (its answers are disabled),
  // so what is sent is what was shown.
  var form = document.querySelector("form.stepper");
  if (!form) { return; }
  var steps = Array.prototype.slice.call(form.querySelectorAll(".step"));
  var back = form.querySelector("button.back-link");
  var next = form.querySelector("button.next");
  var submit = form.querySelector("button[type=submit]");
  var progress = form.querySelector(".progress");
  var returning = form.hasAttribute("data-return");
  var current = Math.min(parseInt(form.getAttribute("data-start-step") || "0", 10) || 0,
                         steps.length - 1);
  var ageGroups = (form.getAttribute("data-age-groups") || "").split(" ").map(function (g) {
    var parts = g.split(":");
    return { id: parts[0], below: parts[1] === "" ? Infinity : parseFloat(parts[1]) };
  });

  function field(id) { return document.getElementById(id); }
  function age() {
    var box = field("age_years");
    var value = box && /^\s*\d+(\.\d+)?\s*$/.test(box.value) ? parseFloat(box.value) : NaN;
    return isNaN(value) ? null : value;
  }
  function ageGroup() {
    var years = age();
    if (years === null) { return null; }
    for (var i = 0; i < ageGroups.length; i++) {
      if (years < ageGroups[i].below) { return ageGroups[i].id; }
    }
    return null;
  }

  // Whether an element's questions apply to this person (its data-ages, data-sexes and
  // data-age-from; a sex or age-from not yet answered keeps the question).
  function fits(el) {
    var group = ageGroup();
    var ages = el.getAttribute("data-ages");
    // A question for some ages waits for the age (asked on the same step, first).
    if (ages && (group === null || ages.split(" ").indexOf(group) < 0)) { return false; }
    var sexes = el.getAttribute("data-sexes");
    var sex = field("sex") ? field("sex").value : "unknown";
    if (sexes && sexes.split(" ").indexOf(sex) < 0) { return false; }
    var from = el.getAttribute("data-age-from");
    if (from && age() !== null && age() < parseFloat(from)) { return false; }
    var shownBy = el.getAttribute("data-shown-by");
    if (shownBy && !(field(shownBy) && field(shownBy).checked)) { return false; }
    return true;
  }

  function applicable(step) {
    var area = step.getAttribute("data-area");
    if (area) {
      var all = field("area_all");
      var box = field("area_" + area);
      // Without an area chosen (none asked yet), every area is asked.
      var anyChosen = form.querySelector("input[id^=area_]:checked") !== null;
      if (anyChosen && !(all && all.checked) && !(box && box.checked)) { return false; }
    }
    return fits(step);
  }

  // What is not asked is not sent: every answer of a step not asked, and of an item not
  // asked of this person, is disabled; the rest enabled. (Whether a step is on screen
  // does not matter: the steps after this one are hidden but still to be asked.)
  function sync() {
    steps.forEach(function (step) {
      var on = applicable(step);
      step.querySelectorAll("input, select").forEach(function (i) { i.disabled = !on; });
      step.querySelectorAll("[data-ages], [data-sexes], [data-age-from], [data-shown-by]")
        .forEach(function (item) {
          var shown = fits(item);
          item.hidden = !shown;
          if (!shown) {
            item.querySelectorAll("input, select").forEach(function (i) { i.disabled = true; });
          }
        });
    });
  }

  function asked() { return steps.filter(applicable); }
  function answered(step) {
    if (!step.hasAttribute("data-needs-answer")) { return true; }
    var needed = step.getAttribute("data-needs-field");  // a number that must be typed
    if (needed) { return /^\s*\d+(\.\d+)?\s*$/.test(field(needed).value); }
    return step.querySelector("input:checked:not(:disabled)") !== null;
  }

  function show(index, focus) {
    sync();
    current = index;
    var open = asked();
    var position = open.indexOf(steps[index]);
    var last = position === open.length - 1;
    steps.forEach(function (step, i) { step.hidden = i !== index; });
    // The introduction is read once, on the first step.
    form.parentNode.querySelectorAll(".intro").forEach(function (p) { p.hidden = index > 0; });
    back.hidden = index === 0;
    next.hidden = last;
    submit.hidden = !last && !returning;
    if (returning && !last) { submit.textContent = "Save and go back to check your answers"; }
    progress.hidden = false;
    // The number of steps is known once the areas are chosen (until then it would shrink).
    var known = form.querySelector("input[id^=area_]:checked") !== null ||
      !form.querySelector(".step[data-area]");
    progress.textContent = "Step " + (position + 1) + (known ? " of " + open.length : "") +
      ": " + steps[index].getAttribute("data-step-name");
    clearError(steps[index]);
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

  // A step that needs an answer says so when Continue is pressed without one (GOV.UK:
  // the button is never disabled; the error is said, linked and focused).
  function clearError(step) {
    var old = step.querySelector(".step-error");
    if (old) { old.remove(); }
    step.classList.remove("has-error");
  }
  function sayError(step) {
    clearError(step);
    var message = document.createElement("p");
    message.className = "error-message step-error";
    message.id = "step-error-" + steps.indexOf(step);
    message.setAttribute("role", "alert");
    message.innerHTML = '<span class="visually-hidden">Error:</span> ';
    message.appendChild(document.createTextNode(step.getAttribute("data-needs-answer")));
    var legend = step.querySelector("legend");
    legend.parentNode.insertBefore(message, legend.nextSibling);
    step.classList.add("has-error");
    var needed = step.getAttribute("data-needs-field");
    var first = needed ? field(needed) : step.querySelector("input:not(:disabled)");
    if (first) { first.focus(); }
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
      if (answered(step)) { clearError(step); }
      sync();
    });
  });
  form.addEventListener("input", sync);

  function triage() {
    // The server's engine decides; a failure to ask it is not an answer, so the check
    // goes on and the server asks again when the answers are sent.
    return fetch(form.getAttribute("data-triage"), { method: "POST", body: new FormData(form) })
      .then(function (response) { return response.ok ? response.json() : { emergency: false }; })
      .catch(function () { return { emergency: false }; });
  }

  var busy = false;
  next.addEventListener("click", function () {
    if (busy) { return; }
    if (!answered(steps[current])) { sayError(steps[current]); return; }
    busy = true;
    sync();
    triage().then(function (result) {
      busy = false;
      if (result.emergency) { form.submit(); return; }
      var open = asked();
      var after = open[open.indexOf(steps[current]) + 1];
      go(after ? steps.indexOf(after) : current);
    });
  });
  back.addEventListener("click", function () { history.back(); });
  form.addEventListener("submit", function (event) {
    if (!answered(steps[current]) && !returning) { event.preventDefault(); sayError(steps[current]); }
    sync();
  });

  // Enter (or a phone's Go key) moves to the next step, as Continue does, whatever has
  // the focus (a tick box or a choice included: Enter there used to send the whole check
  // and skip every step after it); on the last step a text box sends the answers.
  form.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || target.tagName !== "INPUT") { return; }
    var open = asked();
    var last = open.indexOf(steps[current]) === open.length - 1;
    if (!last) {
      event.preventDefault();
      next.click();
    } else if (target.type === "checkbox" || target.type === "radio") {
      event.preventDefault();
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
