#include "tests/support/model_fixture.h"

#include "gtest/gtest.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

bool MakeTinyModelWithTokenizer(const std::string& dir) {
  const std::string golden = GoldenDir("fox-pro-tiny");
  WriteFileOrDie(dir + "/config.json", ReadFileOrDie(golden + "/config.json"));
  WriteFileOrDie(dir + "/model.safetensors", ReadFileOrDie(golden + "/model.safetensors"));
  WriteFileOrDie(dir + "/corpus.txt",
                 ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt").substr(0, 100000));
  const auto train = RunCommand("spm_train --input=" + ShellQuote(dir + "/corpus.txt") +
                                " --model_prefix=" + ShellQuote(dir + "/tokenizer") +
                                " --vocab_size=512 --model_type=bpe --byte_fallback=true"
                                " --num_threads=1 --minloglevel=2 > /dev/null 2>&1");
  EXPECT_EQ(train.exit_code, 0) << "spm_train (Debian package sentencepiece) is needed";
  return train.exit_code == 0;
}

bool MakeTestCertificates(const std::string& dir) {
  const std::string d = ShellQuote(dir);
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script =
      "set -e; cd " + d + "\n" +
      // Two CAs: the one the server trusts, and a rogue one.
      "for ca in ca rogue_ca; do openssl req -x509 " + key + " -keyout $ca.key -out $ca.crt "
      "-days 2 -subj /CN=foxserve-test-$ca -addext basicConstraints=critical,CA:TRUE "
      "-addext keyUsage=critical,keyCertSign,cRLSign; done\n"
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' "
      "> server.ext\n"
      "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n"
      "sign() { openssl req " + key + " -keyout $1.key -out $1.csr -subj /CN=$1; "
      "openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt "
      "-days 2 -extfile $3; }\n"
      "sign server ca server.ext; sign client ca client.ext; "
      "sign rogue_client rogue_ca client.ext\n";
  WriteFileOrDie(dir + "/make_certs.sh", script);
  const auto r = RunCommand("sh " + ShellQuote(dir + "/make_certs.sh"), /*merge_stderr=*/true);
  EXPECT_EQ(r.exit_code, 0) << "openssl failed:\n" << r.output;
  return r.exit_code == 0;
}

}  // namespace testing
}  // namespace foxserve
