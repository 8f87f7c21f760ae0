// What a node's zmeshd counted, as its operators read it: /metrics as Prometheus scrapes it
// and /stats from the admin API, both fetched from inside the node's netns. Tests assert on
// these, not on log lines, and wait on them with eventually() instead of sleeping. A log line
// is asserted only for what zmeshd tells its operator (why it refused something), which no
// counter says.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "lab.h"

namespace zmesh::test {

using Labels = std::map<std::string, std::string>;

class Metrics {
 public:
  // Parses Prometheus's text format. Throws std::runtime_error naming a malformed line.
  explicit Metrics(std::string text);
  // GET /metrics from the node's zmeshd (its metrics address in the topology). A failed
  // scrape fails the test and reads as an empty page.
  static Metrics scrape(const Lab& lab, const std::string& node);

  // The sum over the series of `name` whose labels include every pair of `labels` (0 if none).
  double sum(const std::string& name, const Labels& labels = {}) const;
  // Whether any series of `name` has such labels.
  bool has(const std::string& name, const Labels& labels = {}) const;
  const std::string& text() const { return text_; }

 private:
  struct Series {
    std::string name;
    Labels labels;
    double value = 0;
  };
  std::string text_;
  std::vector<Series> series_;
};

// The page itself, for failure messages.
std::ostream& operator<<(std::ostream& out, const Metrics& metrics);

// Scrapes the node until `done` holds of a scrape (20 s at most); returns the last scrape.
Metrics await_metrics(const Lab& lab, const std::string& node, const std::function<bool(const Metrics&)>& done);
// Scrapes the node until sum(name, labels) >= at_least; returns the last scrape.
Metrics await_metric(const Lab& lab, const std::string& node, const std::string& name, const Labels& labels,
                     double at_least);

// GET /stats from the node's admin API (127.0.0.1:15000 in its netns); null on failure.
nlohmann::json stats(const Lab& lab, const std::string& node);

// The labels of Istio's TCP series for a connection `source` pod -> `destination` pod in the
// lab's default namespace (service accounts are the pods' apps: app1-n2 runs as app1).
Labels connection(const std::string& reporter, const std::string& source, const std::string& destination);

}  // namespace zmesh::test
