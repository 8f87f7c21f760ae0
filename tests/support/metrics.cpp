#include "metrics.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "eventually.h"

namespace zmesh::test {
namespace {

// name{k="v",...} value   or   name value   (escapes in values: \\ \" \n)
bool parse_line(const std::string& line, std::string& name, Labels& labels, double& value) {
  size_t i = line.find_first_of("{ ");
  if (i == std::string::npos || i == 0) return false;
  name = line.substr(0, i);
  if (line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find("=\"", i);
      if (eq == std::string::npos) return false;
      const std::string key = line.substr(i, eq - i);
      std::string val;
      for (i = eq + 2; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          val.push_back(line[i] == 'n' ? '\n' : line[i]);
        } else {
          val.push_back(line[i]);
        }
      }
      if (i >= line.size()) return false;
      labels[key] = val;
      ++i;  // the closing quote
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // '}'
  }
  try {
    value = std::stod(line.substr(i));
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

bool includes(const Labels& have, const Labels& want) {
  for (const auto& [key, value] : want) {
    auto it = have.find(key);
    if (it == have.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

Metrics::Metrics(std::string text) : text_(std::move(text)) {
  size_t start = 0, number = 0;
  while (start < text_.size()) {
    size_t end = text_.find('\n', start);
    if (end == std::string::npos) end = text_.size();
    const std::string line = text_.substr(start, end - start);
    start = end + 1;
    ++number;
    if (line.empty() || line[0] == '#') continue;
    Series series;
    if (!parse_line(line, series.name, series.labels, series.value))
      throw std::runtime_error("metrics line " + std::to_string(number) + " is not Prometheus text: " + line);
    series_.push_back(std::move(series));
  }
}

Metrics Metrics::scrape(const Lab& lab, const std::string& node) {
  const std::string at = lab.node(node).at("zmeshd").at("metrics");
  auto got = run(lab.exec(node, {"curl", "-sS", "--max-time", "5", "http://" + at + "/metrics"}));
  EXPECT_EQ(got.exit_code, 0) << "scrape " << node << ": " << got.err;
  return Metrics(got.exit_code == 0 ? got.out : "");
}

double Metrics::sum(const std::string& name, const Labels& labels) const {
  double total = 0;
  for (const auto& series : series_)
    if (series.name == name && includes(series.labels, labels)) total += series.value;
  return total;
}

bool Metrics::has(const std::string& name, const Labels& labels) const {
  for (const auto& series : series_)
    if (series.name == name && includes(series.labels, labels)) return true;
  return false;
}

std::ostream& operator<<(std::ostream& out, const Metrics& metrics) { return out << metrics.text(); }

Metrics await_metrics(const Lab& lab, const std::string& node, const std::function<bool(const Metrics&)>& done) {
  Metrics last("");
  eventually([&] {
    last = Metrics::scrape(lab, node);
    return done(last);
  });
  return last;
}

Metrics await_metric(const Lab& lab, const std::string& node, const std::string& name, const Labels& labels,
                     double at_least) {
  return await_metrics(lab, node, [&](const Metrics& m) { return m.sum(name, labels) >= at_least; });
}

nlohmann::json stats(const Lab& lab, const std::string& node) {
  auto got = run(lab.exec(node, {"curl", "-sS", "--max-time", "5", "http://127.0.0.1:15000/stats"}));
  if (got.exit_code != 0 || !nlohmann::json::accept(got.out)) {
    ADD_FAILURE() << "GET /stats on " << node << ": " << got.out << got.err;
    return nullptr;
  }
  return nlohmann::json::parse(got.out);
}

Labels connection(const std::string& reporter, const std::string& source, const std::string& destination) {
  auto account = [](const std::string& pod) { return pod.substr(0, pod.find('-')); };
  const std::string prefix = "spiffe://cluster.local/ns/default/sa/";
  return {{"reporter", reporter},
          {"source_workload", source},
          {"source_principal", prefix + account(source)},
          {"destination_workload", destination},
          {"destination_principal", prefix + account(destination)}};
}

}  // namespace zmesh::test
