// The explorer's page behaviour, kept out of the HTML so the Content-Security-Policy forbids inline scripts.
// A form with data-confirm="QUESTION" is submitted only when the user confirms QUESTION.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
