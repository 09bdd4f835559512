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
    function limit(keep) {
      var chosen = null;
      Array.prototype.forEach.call(units.querySelectorAll("optgroup"), function (group) {
        var match = group.getAttribute("data-test") === tests.value;
        group.hidden = !match;
        group.disabled = !match;
        if (match) {
          var selected = group.querySelector("option:checked");
          chosen = keep && selected ? selected : group.querySelector("option");
        }
      });
      if (chosen) { chosen.selected = true; }
    }
    tests.addEventListener("change", function () { limit(false); });
    limit(true);
  });

  // The patient check: one step at a time, with Back / Next and a progress line.
  var form = document.querySelector("form.stepper");
  if (!form) { return; }
  var steps = Array.prototype.slice.call(form.querySelectorAll("fieldset.step"));
  var back = form.querySelector("button.back");
  var next = form.querySelector("button.next");
  var submit = form.querySelector("button[type=submit]");
  var progress = form.querySelector(".progress");
  var current = 0;
  if (errors) {
    // Show the step that holds the age question when the server asked for it again.
    steps.forEach(function (step, i) { if (step.querySelector("#age_years")) { current = i; } });
  }

  function show(index, focus) {
    current = index;
    steps.forEach(function (step, i) { step.hidden = i !== index; });
    back.hidden = index === 0;
    next.hidden = index === steps.length - 1;
    submit.hidden = index !== steps.length - 1;
    progress.hidden = false;
    progress.textContent = "Step " + (index + 1) + " of " + steps.length;
    if (focus) {
      var heading = steps[index].querySelector("h2");
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  function redFlagTicked() {
    return form.querySelector("input[data-red-flag]:checked") !== null;
  }

  next.addEventListener("click", function () {
    // Red-flag answers go straight to the emergency advice.
    if (current === 0 && redFlagTicked()) { form.submit(); return; }
    show(Math.min(current + 1, steps.length - 1), true);
  });
  back.addEventListener("click", function () { show(Math.max(current - 1, 0), true); });
  form.addEventListener("submit", function (event) {
    var age = form.querySelector("#age_years");
    if (!redFlagTicked() && age && !age.value.trim()) {
      event.preventDefault();
      steps.forEach(function (step, i) { if (step.contains(age)) { show(i, false); } });
      age.setAttribute("aria-invalid", "true");
      age.focus();
    }
  });
  show(current, false);
})();
