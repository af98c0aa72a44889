//===- CheckpointTest.cpp - config and safetensors readers ----------------===//
#include "Checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace incnn::checkpoint;

namespace {

/// Builds a safetensors byte string from a header and a data section.
std::vector<uint8_t> makeFile(const std::string &header,
                              const std::vector<uint8_t> &data,
                              uint64_t lengthOverride = 0) {
  uint64_t length = lengthOverride ? lengthOverride : header.size();
  std::vector<uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<uint8_t>(length >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

std::vector<uint8_t> floatBytes(const std::vector<float> &values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::string parseError(const std::vector<uint8_t> &bytes) {
  SafetensorsFile file;
  return file.parse(bytes.data(), bytes.size());
}

const char *kLlamaConfig = R"({
  "model_type": "llama", "architectures": ["LlamaForCausalLM"],
  "vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2,
  "intermediate_size": 24, "max_position_embeddings": 64,
  "incnn_vq": [{"layer": 1, "site": "attn_out", "groups": 2, "codes": 8}]
})";

} // namespace

TEST(Safetensors, ReadsF32F16AndBF16) {
  std::vector<uint8_t> data = floatBytes({1.5f, -2.0f});
  data.push_back(0x00); // F16 1.0 = 0x3c00
  data.push_back(0x3c);
  data.push_back(0x80); // BF16 -1.0 = 0xbf80
  data.push_back(0xbf);
  std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("h":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},)"
      R"("b":{"dtype":"BF16","shape":[1,1],"data_offsets":[10,12]},)"
      R"("__metadata__":{"format":"pt"}})";
  std::vector<uint8_t> bytes = makeFile(header, data);
  SafetensorsFile file;
  ASSERT_EQ(file.parse(bytes.data(), bytes.size()), "");
  std::vector<float> values;
  ASSERT_EQ(file.readFloat32("a", values), "");
  EXPECT_EQ(values, (std::vector<float>{1.5f, -2.0f}));
  ASSERT_EQ(file.readFloat32("h", values), "");
  EXPECT_EQ(values, (std::vector<float>{1.0f}));
  ASSERT_EQ(file.readFloat32("b", values), "");
  EXPECT_EQ(values, (std::vector<float>{-1.0f}));
  EXPECT_EQ(file.find("b")->shape, (std::vector<int64_t>{1, 1}));
  EXPECT_NE(file.readFloat32("missing", values), "");
}

TEST(Safetensors, RejectsMalformedFiles) {
  std::vector<uint8_t> data = floatBytes({1, 2});
  std::string good =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(parseError(makeFile(good, data)), "");

  EXPECT_NE(parseError({1, 2, 3}), "") << "shorter than the length prefix";
  EXPECT_NE(parseError(makeFile(good, data, 1 << 20)), "")
      << "header length beyond the file";
  EXPECT_NE(parseError(makeFile("{not json", data)), "");
  EXPECT_NE(parseError(makeFile("[1,2]", data)), "") << "not an object";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data)),
      "")
      << "offsets beyond the data";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data)),
      "")
      << "size does not match the shape";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data)),
      "")
      << "unknown dtype";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data)),
      "")
      << "negative dimension";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data)),
      "")
      << "reversed offsets";
  EXPECT_NE(parseError(makeFile(R"({"a":{"dtype":"F32","shape":[2]}})", data)),
            "")
      << "missing offsets";
  EXPECT_NE(
      parseError(makeFile(
          R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
          data)),
      "")
      << "overflowing shape";
  std::vector<uint8_t> truncated = makeFile(good, data);
  truncated.pop_back();
  EXPECT_NE(parseError(truncated), "") << "truncated data";
}

TEST(Config, ParsesLlamaWithDefaultsAndVQ) {
  ModelConfig config;
  ASSERT_EQ(parseConfig(kLlamaConfig, config), "");
  EXPECT_EQ(config.family, "llama");
  EXPECT_FALSE(config.classifier);
  EXPECT_EQ(config.kvHeads, 2);
  EXPECT_EQ(config.position, "rope");
  EXPECT_TRUE(config.causal);
  EXPECT_FLOAT_EQ(config.normEps, 1e-6f);
  ASSERT_EQ(config.vq.size(), 1u);
  EXPECT_EQ(config.vq[0].codebookName(), "incnn.vq.1.attn_out.codebook");
  EXPECT_NE(config.findVQ(1, "attn_out"), nullptr);
  EXPECT_EQ(config.findVQ(0, "attn_out"), nullptr);
}

TEST(Config, ParsesOptClassifierLabels) {
  ModelConfig config;
  ASSERT_EQ(parseConfig(R"({"model_type":"opt",
      "architectures":["OPTForSequenceClassification"], "vocab_size":50,
      "hidden_size":8, "num_hidden_layers":1, "num_attention_heads":2,
      "ffn_dim":16, "max_position_embeddings":32,
      "id2label":{"1":"b","0":"a"}, "incnn_pool":"mean"})",
                        config),
            "");
  EXPECT_TRUE(config.classifier);
  EXPECT_EQ(config.labels, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config.position, "learned");
  EXPECT_EQ(config.pool, "mean");
  EXPECT_EQ(config.activation, "relu");
}

TEST(Config, RejectsBadConfigsWithClearMessages) {
  struct Case {
    std::string json, expected;
  };
  std::string base = R"("vocab_size":32,"hidden_size":16,"num_hidden_layers":2,
      "num_attention_heads":4,"intermediate_size":24,"max_position_embeddings":64)";
  std::vector<Case> cases = {
      {"{", "not valid JSON"},
      {"[]", "top level must be an object"},
      {R"({"model_type":"gpt2",)" + base + "}",
       "unsupported model_type 'gpt2'"},
      {R"({"model_type":"llama","vocab_size":32})", "missing required key"},
      {R"({"model_type":"llama",)" + base +
           R"(,"architectures":["BertModel"]})",
       "unsupported architecture"},
      {R"({"model_type":"llama",)" + base + R"(,"num_key_value_heads":3})",
       "multiple of num_key_value_heads"},
      {R"({"model_type":"llama",)" + base + R"(,"hidden_size":"x"})",
       "must be an integer"},
      {R"({"model_type":"llama",)" + base + R"(,"incnn_position":"alibi"})",
       "incnn_position must be"},
      {R"({"model_type":"llama",)" + base +
           R"(,"incnn_vq":[{"layer":5,"site":"attn_out","groups":1,"codes":4}]})",
       "layer 5 does not exist"},
      {R"({"model_type":"llama",)" + base +
           R"(,"incnn_vq":[{"layer":0,"site":"mlp","groups":1,"codes":4}]})",
       "site must be"},
      {R"({"model_type":"llama",)" + base +
           R"(,"incnn_vq":[{"layer":0,"site":"attn_out","groups":3,"codes":4}]})",
       "groups must divide"},
      {R"({"model_type":"llama",)" + base +
           R"(,"architectures":["LlamaForSequenceClassification"]})",
       "id2label"},
      {R"({"model_type":"llama",)" + base + R"(,"bos_token_id":99})",
       "outside the vocabulary"},
      // Values that overflow float are refused here, not as a broken
      // lowered program later.
      {R"({"model_type":"opt","ffn_dim":24,)" + base +
           R"(,"layer_norm_eps":1e300})",
       "'layer_norm_eps' = 1e+300 does not fit a 32-bit float"},
      {R"({"model_type":"llama",)" + base + R"(,"rope_theta":1e300})",
       "'rope_theta' = 1e+300 does not fit a 32-bit float"},
      {R"({"model_type":"llama",)" + base + R"(,"rms_norm_eps":-1e300})",
       "does not fit a 32-bit float"},
      {R"({"model_type":"llama",)" + base + R"(,"rms_norm_eps":5})",
       "norm epsilon must be in (0, 1]"},
  };
  for (const Case &c : cases) {
    ModelConfig config;
    std::string error = parseConfig(c.json, config);
    EXPECT_NE(error.find(c.expected), std::string::npos)
        << "input: " << c.json << "\nerror: " << error;
  }
}

TEST(Checkpoint, MissingDirectoryIsAnError) {
  Checkpoint checkpoint;
  std::string error = loadCheckpoint("/nonexistent/incnn-model", checkpoint);
  EXPECT_NE(error.find("not a checkpoint directory"), std::string::npos);
}
