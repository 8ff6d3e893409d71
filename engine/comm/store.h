#pragma once
// The rendezvous key-value store: rank 0 serves it over TCP at MASTER_ADDR:MASTER_PORT, every rank (rank 0 too)
// talks to it as a client. Gloo connects its full mesh through it and NCCL passes its unique id through it.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zt {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& value) = 0;
  // Waits (up to timeout()) for the key, then returns its value.
  virtual std::vector<char> get(const std::string& key) = 0;
  // Adds delta to the integer stored at key (absent = 0) and returns the new value; atomic across ranks.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // Waits until every key exists; throws RuntimeError naming the missing keys after timeout.
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
  // True when every key exists, without waiting.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  virtual std::chrono::milliseconds timeout() const = 0;
  // Where this store lives, for error messages ("127.0.0.1:29500").
  virtual std::string describe() const = 0;

  void wait(const std::vector<std::string>& keys) { wait(keys, timeout()); }
  void set_string(const std::string& key, const std::string& v) { set(key, std::vector<char>(v.begin(), v.end())); }
  std::string get_string(const std::string& key) {
    auto v = get(key);
    return std::string(v.begin(), v.end());
  }
};

// Serves the store (rank 0 only). Binds host:port on every interface; port 0 picks a free one (see port()).
// Throws RuntimeError naming the port when it is taken.
class TcpStoreServer {
 public:
  TcpStoreServer(int port, double timeout_s);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  int port() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// A client connection to the store. Connects with retry until timeout_s and throws RuntimeError naming
// host:port when the master cannot be reached. When is_server is set (rank 0), it first starts the server in this
// process and keeps it alive as long as the client lives.
class TcpStore : public Store {
 public:
  TcpStore(const std::string& host, int port, double timeout_s, bool is_server);
  ~TcpStore() override;

  void set(const std::string& key, const std::vector<char>& value) override;
  std::vector<char> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  bool check(const std::vector<std::string>& keys) override;
  std::chrono::milliseconds timeout() const override { return timeout_; }
  std::string describe() const override;
  using Store::wait;

  int port() const { return port_; }

 private:
  std::vector<char> request(const std::vector<char>& msg, std::chrono::milliseconds reply_within);

  std::string host_;
  int port_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<TcpStoreServer> server_;
  int fd_ = -1;
  struct Lock;
  std::unique_ptr<Lock> lock_;
};

// Every key under "prefix/"; used to give each process group its own namespace in one store.
class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base) : prefix_(std::move(prefix)), base_(std::move(base)) {}
  void set(const std::string& key, const std::vector<char>& value) override { base_->set(k(key), value); }
  std::vector<char> get(const std::string& key) override { return base_->get(k(key)); }
  int64_t add(const std::string& key, int64_t delta) override { return base_->add(k(key), delta); }
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    std::vector<std::string> full;
    for (const auto& key : keys) full.push_back(k(key));
    base_->wait(full, timeout);
  }
  bool check(const std::vector<std::string>& keys) override {
    std::vector<std::string> full;
    for (const auto& key : keys) full.push_back(k(key));
    return base_->check(full);
  }
  std::chrono::milliseconds timeout() const override { return base_->timeout(); }
  std::string describe() const override { return base_->describe(); }
  using Store::wait;

 private:
  std::string k(const std::string& key) const { return prefix_ + "/" + key; }
  std::string prefix_;
  std::shared_ptr<Store> base_;
};

// An in-process store for a world of one (no TCP).
class LocalStore : public Store {
 public:
  LocalStore();
  ~LocalStore() override;
  void set(const std::string& key, const std::vector<char>& value) override;
  std::vector<char> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  bool check(const std::vector<std::string>& keys) override;
  std::chrono::milliseconds timeout() const override { return std::chrono::milliseconds(1000); }
  std::string describe() const override { return "local store"; }
  using Store::wait;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace zt
