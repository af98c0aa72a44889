//===- Calibrate.cpp - post-training VQ calibration -----------------------===//
#include "incnn/Compiler/Calibrate.h"

#include "incnn/Compiler/BuildProgram.h"
#include "incnn/Compiler/Import.h"
#include "incnn/Compiler/Pipelines.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <Eigen/Dense>

#include <algorithm>
#include <limits>
#include <random>
#include <sstream>

using namespace incnn;

namespace {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Each row's nearest codeword: argmin_k ||c_k||^2 - 2 x.c_k, one GEMM for
/// all rows (ties go to the lower index, as in the runtime's VQ).
void assignNearest(const Eigen::Ref<const RowMatrix> &x,
                   const RowMatrix &codebook, std::vector<int64_t> &assign) {
  Eigen::VectorXf norms = codebook.rowwise().squaredNorm();
  RowMatrix scores = x * codebook.transpose() * -2.0f;
  scores.rowwise() += norms.transpose();
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    scores.row(i).minCoeff(&assign[size_t(i)]);
}

/// k-means++ seeding, then Lloyd iterations with dead-code restarts, on the
/// rows of `x`. Writes K codewords (row-major) to `out`.
void kmeans(const std::vector<float> &data, int64_t rows, int64_t d, int64_t K,
            int iterations, std::mt19937 &rng, float *out) {
  Eigen::Map<const RowMatrix> x(data.data(), rows, d);
  RowMatrix codebook(K, d);
  std::uniform_int_distribution<int64_t> pick(0, rows - 1);
  Eigen::VectorXf closest =
      Eigen::VectorXf::Constant(rows, std::numeric_limits<float>::max());
  codebook.row(0) = x.row(pick(rng));
  for (int64_t k = 1; k < K; ++k) {
    closest = closest.cwiseMin(
        (x.rowwise() - codebook.row(k - 1)).rowwise().squaredNorm());
    double total = closest.cast<double>().sum();
    std::uniform_real_distribution<double> u(0, total);
    double target = u(rng), acc = 0;
    int64_t chosen = rows - 1;
    for (int64_t i = 0; i < rows; ++i) {
      acc += closest[i];
      if (acc >= target) {
        chosen = i;
        break;
      }
    }
    codebook.row(k) = x.row(chosen);
  }
  std::vector<int64_t> assign(static_cast<size_t>(rows));
  for (int it = 0; it < iterations; ++it) {
    assignNearest(x, codebook, assign);
    Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(K, d);
    std::vector<int64_t> count(size_t(K), 0);
    for (int64_t i = 0; i < rows; ++i) {
      ++count[size_t(assign[size_t(i)])];
      sum.row(assign[size_t(i)]) += x.row(i).cast<double>();
    }
    for (int64_t k = 0; k < K; ++k) {
      if (count[size_t(k)] == 0) // restart a dead code on a random row
        codebook.row(k) = x.row(pick(rng));
      else
        codebook.row(k) = (sum.row(k) / double(count[size_t(k)])).cast<float>();
    }
  }
  Eigen::Map<RowMatrix>(out, K, d) = codebook;
}

} // namespace

std::string incnn::parseVQSites(const std::string &text,
                                std::vector<checkpoint::VQSite> &sites) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    checkpoint::VQSite site;
    std::stringstream parts(item);
    std::string layer, name, groups, codes;
    if (!std::getline(parts, layer, ':') || !std::getline(parts, name, ':') ||
        !std::getline(parts, groups, ':') || !std::getline(parts, codes, ':'))
      return "bad VQ site '" + item + "': expected LAYER:SITE:GROUPS:CODES";
    char *end = nullptr;
    site.layer = int(std::strtol(layer.c_str(), &end, 10));
    bool ok = *end == '\0' && !layer.empty();
    site.groups = int(std::strtol(groups.c_str(), &end, 10));
    ok = ok && *end == '\0' && site.groups > 0;
    site.codes = int(std::strtol(codes.c_str(), &end, 10));
    ok = ok && *end == '\0' && site.codes > 0;
    site.site = name;
    if (!ok || (name != "attn_out" && name != "block_out"))
      return "bad VQ site '" + item +
             "': expected LAYER:attn_out|block_out:GROUPS:CODES";
    sites.push_back(site);
  }
  if (sites.empty())
    return "no VQ sites given";
  return "";
}

std::string incnn::calibrateVQ(mlir::MLIRContext &context,
                               checkpoint::Checkpoint &ckpt,
                               const CalibrationOptions &options) {
  checkpoint::ModelConfig &config = ckpt.config;
  if (!config.vq.empty())
    return "the checkpoint already has VQ sites; calibration needs a dense "
           "checkpoint";
  if (options.windows.empty())
    return "no calibration tokens";
  std::vector<checkpoint::VQSite> sites = options.sites;
  std::stable_sort(
      sites.begin(), sites.end(), [](const auto &a, const auto &b) {
        return a.layer != b.layer ? a.layer < b.layer : a.site == "attn_out";
      });
  std::mt19937 rng(options.seed);
  int64_t d = config.hidden;
  for (const checkpoint::VQSite &site : sites) {
    if (site.layer < 0 || site.layer >= config.layers)
      return "VQ site layer " + std::to_string(site.layer) + " does not exist";
    if (d % site.groups != 0)
      return "VQ groups must divide hidden_size";
    if (config.findVQ(site.layer, site.site))
      return "duplicate VQ site";
    int64_t G = site.groups, K = site.codes, dg = d / G;
    // A placeholder one-code site exposes the site's input in the program.
    checkpoint::VQSite probe = site;
    probe.codes = 1;
    config.vq.push_back(probe);
    ckpt.weights.addTensor(site.codebookName(), {G, 1, dg},
                           std::vector<float>(size_t(G * dg), 0.0f));
    std::string error;
    auto module = importCheckpoint(context, ckpt, error);
    if (!module)
      return error;
    {
      // Sessions run the delta program: derive it. Partial VQ placements
      // draw bypass warnings here that say nothing about the final model.
      mlir::ScopedDiagnosticHandler quiet(&context, [](mlir::Diagnostic &d) {
        return mlir::success(d.getSeverity() !=
                             mlir::DiagnosticSeverity::Error);
      });
      mlir::PassManager pm(&context);
      buildIncrementalPipeline(pm);
      if (mlir::failed(pm.run(*module)))
        return "internal error: the calibration program did not compile";
    }
    runtime::Program program;
    if (std::string e = buildProgram(*module, ckpt, program); !e.empty())
      return e;
    int32_t activation = -1;
    for (const runtime::Instr &in : program.instrs)
      if (in.op == runtime::OpCode::VectorQuantize &&
          program.weights[size_t(in.weights[0])].name == site.codebookName())
        activation = in.operands[0];
    if (activation < 0)
      return "internal error: calibration site not found in the program";
    // Collect the activations (every row, then an evenly spaced subset).
    runtime::Evaluator evaluator(program, {});
    std::vector<float> rows;
    for (const std::vector<int32_t> &window : options.windows) {
      if (runtime::Status st = evaluator.evaluate(window); !st.ok())
        return "calibration run failed: " + st.error;
      const std::vector<float> &v = evaluator.value(activation);
      rows.insert(rows.end(), v.begin(), v.end());
    }
    int64_t total = int64_t(rows.size()) / d;
    int64_t keep = std::min(total, options.maxRows);
    std::vector<float> sample(size_t(keep * d));
    for (int64_t i = 0; i < keep; ++i) {
      int64_t from = i * total / keep;
      std::copy_n(&rows[size_t(from * d)], d, &sample[size_t(i * d)]);
    }
    if (keep < K)
      return "only " + std::to_string(keep) + " calibration rows for " +
             std::to_string(K) + " codes";
    std::vector<float> codebook(size_t(G * K * dg));
    std::vector<float> group(size_t(keep * dg));
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t i = 0; i < keep; ++i)
        std::copy_n(&sample[size_t(i * d + g * dg)], dg,
                    &group[size_t(i * dg)]);
      kmeans(group, keep, dg, K, options.iterations, rng,
             codebook.data() + g * K * dg);
    }
    ckpt.weights.addTensor(site.codebookName(), {G, K, dg},
                           std::move(codebook));
    config.vq.back().codes = int(K);
    if (options.progress)
      options.progress("calibrated VQ " + std::to_string(site.layer) + ":" +
                       site.site + " (" + std::to_string(G) + " x " +
                       std::to_string(K) + " codes) on " +
                       std::to_string(keep) + " of " + std::to_string(total) +
                       " activation rows");
  }
  return "";
}
