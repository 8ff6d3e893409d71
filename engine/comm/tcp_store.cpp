// The TCP rendezvous store. Wire format: every message is [u32 length][payload]; a payload is one op byte followed
// by length-prefixed fields. One server thread accepts, one thread per client connection serves requests; a world
// has few ranks, so a thread each is simpler than a poll loop and costs nothing.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "engine/base/error.h"
#include "engine/comm/store.h"

namespace zt {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void put_bytes(std::vector<char>& out, const void* data, size_t n) {
  size_t at = out.size();
  out.resize(at + n);
  if (n) std::memcpy(out.data() + at, data, n);
}
void put_u32(std::vector<char>& out, uint32_t v) { put_bytes(out, &v, 4); }
void put_field(std::vector<char>& out, const char* data, size_t n) {
  put_u32(out, static_cast<uint32_t>(n));
  put_bytes(out, data, n);
}
void put_field(std::vector<char>& out, const std::string& s) { put_field(out, s.data(), s.size()); }

struct Reader {
  const std::vector<char>& buf;
  size_t pos = 1;  // past the op byte
  uint32_t u32() {
    if (pos + 4 > buf.size()) throw RuntimeError("rendezvous store: truncated message");
    uint32_t v;
    std::memcpy(&v, buf.data() + pos, 4);
    pos += 4;
    return v;
  }
  std::string field() {
    uint32_t n = u32();
    if (pos + n > buf.size()) throw RuntimeError("rendezvous store: truncated message");
    std::string s(buf.data() + pos, n);
    pos += n;
    return s;
  }
};

// Waits until fd is readable/writable or the deadline passes; false on timeout. stop (optional) ends it early.
bool poll_fd(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* stop = nullptr) {
  while (true) {
    if (stop && stop->load()) return false;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, stop ? 100 : left)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// Result of a framed read: ok, the peer closed, or the deadline passed.
enum class ReadResult { Ok, Closed, Timeout };

ReadResult read_exact(int fd, char* p, size_t n, Clock::time_point deadline, const std::atomic<bool>* stop) {
  while (n > 0) {
    if (!poll_fd(fd, POLLIN, deadline, stop)) return ReadResult::Timeout;
    ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return ReadResult::Closed;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ReadResult::Closed;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return ReadResult::Ok;
}

ReadResult read_message(int fd, std::vector<char>& msg, Clock::time_point deadline,
                        const std::atomic<bool>* stop = nullptr) {
  uint32_t len;
  auto r = read_exact(fd, reinterpret_cast<char*>(&len), 4, deadline, stop);
  if (r != ReadResult::Ok) return r;
  msg.resize(len);
  return read_exact(fd, msg.data(), len, deadline, stop);
}

bool write_message(int fd, const std::vector<char>& payload) {
  std::vector<char> out;
  out.reserve(payload.size() + 4);
  put_u32(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  size_t off = 0;
  while (off < out.size()) {
    ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    off += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Server

struct TcpStoreServer::State {
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, std::string> kv;
  std::thread acceptor;
  std::mutex clients_mu;
  std::vector<std::thread> clients;

  bool has_all(const std::vector<std::string>& keys) {
    for (const auto& k : keys)
      if (!kv.count(k)) return false;
    return true;
  }

  // One request in, one reply out.
  std::vector<char> handle(const std::vector<char>& msg) {
    Reader in{msg};
    std::vector<char> reply;
    char op = msg.empty() ? '?' : msg[0];
    if (op == 'S') {
      std::string key = in.field(), value = in.field();
      {
        std::lock_guard<std::mutex> g(mu);
        kv[key] = std::move(value);
      }
      changed.notify_all();
      reply.push_back('O');
    } else if (op == 'G') {
      std::string key = in.field();
      std::lock_guard<std::mutex> g(mu);
      auto it = kv.find(key);
      if (it == kv.end()) {
        reply.push_back('N');
      } else {
        reply.push_back('O');
        reply.insert(reply.end(), it->second.begin(), it->second.end());
      }
    } else if (op == 'A') {
      std::string key = in.field();
      int64_t delta = std::stoll(in.field());
      int64_t now;
      {
        std::lock_guard<std::mutex> g(mu);
        auto& v = kv[key];
        now = (v.empty() ? 0 : std::stoll(v)) + delta;
        v = std::to_string(now);
      }
      changed.notify_all();
      reply.push_back('O');
      std::string s = std::to_string(now);
      reply.insert(reply.end(), s.begin(), s.end());
    } else if (op == 'W' || op == 'C') {
      auto wait_ms = op == 'W' ? std::stoll(in.field()) : 0;
      uint32_t n = in.u32();
      std::vector<std::string> keys;
      for (uint32_t i = 0; i < n; ++i) keys.push_back(in.field());
      auto deadline = Clock::now() + milliseconds(wait_ms);
      std::unique_lock<std::mutex> lk(mu);
      while (!has_all(keys) && Clock::now() < deadline && !stop.load())
        changed.wait_until(lk, std::min(deadline, Clock::now() + milliseconds(100)));
      reply.push_back(has_all(keys) ? 'O' : 'T');
    } else {
      reply.push_back('E');
    }
    return reply;
  }

  void serve(int fd) {
    std::vector<char> msg;
    while (!stop.load()) {
      auto r = read_message(fd, msg, Clock::now() + std::chrono::hours(24 * 365), &stop);
      if (r != ReadResult::Ok) break;
      std::vector<char> reply;
      try {
        reply = handle(msg);
      } catch (const std::exception&) {
        reply = {'E'};
      }
      if (!write_message(fd, reply)) break;
    }
    ::close(fd);
  }

  void accept_loop() {
    while (!stop.load()) {
      pollfd p{listen_fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::lock_guard<std::mutex> g(clients_mu);
      clients.emplace_back([this, fd] { serve(fd); });
    }
  }
};

TcpStoreServer::TcpStoreServer(int port, double timeout_s) : state_(std::make_unique<State>()) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw RuntimeError(std::string("rendezvous store: socket() failed: ") + std::strerror(errno));
  // SO_REUSEADDR only lets us reuse a port in TIME_WAIT; a live listener on it still makes bind fail.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 128) != 0) {
    int err = errno;
    ::close(fd);
    throw RuntimeError("rank 0 cannot serve the rendezvous store on port " + std::to_string(port) + ": " +
                       std::strerror(err) +
                       (err == EADDRINUSE ? " (another job or program holds it; pick another MASTER_PORT)" : ""));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  state_->listen_fd = fd;
  state_->port = ntohs(addr.sin_port);
  state_->acceptor = std::thread([s = state_.get()] { s->accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  state_->stop = true;
  state_->changed.notify_all();
  if (state_->acceptor.joinable()) state_->acceptor.join();
  {
    std::lock_guard<std::mutex> g(state_->clients_mu);
    for (auto& t : state_->clients) t.join();
  }
  ::close(state_->listen_fd);
}

int TcpStoreServer::port() const { return state_->port; }

// ---------------------------------------------------------------------------------------------------------------
// Client

struct TcpStore::Lock {
  std::mutex mu;
};

namespace {

// One connection attempt bounded by the deadline; returns the fd or -1 with err set.
int try_connect(const std::string& host, int port, Clock::time_point deadline, std::string& err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    err = std::string("cannot resolve host: ") + gai_strerror(rc);
    return -1;
  }
  int result = -1;
  for (addrinfo* ai = res; ai && result < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      if (poll_fd(fd, POLLOUT, std::min(deadline, Clock::now() + std::chrono::seconds(2)))) {
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
        r = soerr == 0 ? 0 : -1;
        errno = soerr;
      } else {
        errno = ETIMEDOUT;
      }
    }
    if (r == 0) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      result = fd;
    } else {
      err = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(res);
  return result;
}

}  // namespace

TcpStore::TcpStore(const std::string& host, int port, double timeout_s, bool is_server)
    : host_(host), port_(port), timeout_(milliseconds(static_cast<int64_t>(timeout_s * 1000))),
      lock_(std::make_unique<Lock>()) {
  if (is_server) {
    server_ = std::make_unique<TcpStoreServer>(port, timeout_s);
    port_ = server_->port();
  }
  auto deadline = Clock::now() + timeout_;
  std::string err = "no attempt made";
  while (true) {
    fd_ = try_connect(is_server ? "127.0.0.1" : host_, port_, deadline, err);
    if (fd_ >= 0) break;
    if (Clock::now() + milliseconds(100) >= deadline)
      throw RuntimeError("cannot reach the rendezvous master at " + describe() + " within " +
                         std::to_string(static_cast<int>(timeout_s)) + " s (last error: " + err +
                         "); check MASTER_ADDR/MASTER_PORT and that rank 0 is running");
    std::this_thread::sleep_for(milliseconds(100));
  }
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  // server_ goes last: its destructor joins the connection threads, which end once their clients close.
}

std::string TcpStore::describe() const { return host_ + ":" + std::to_string(port_); }

std::vector<char> TcpStore::request(const std::vector<char>& msg, milliseconds reply_within) {
  std::lock_guard<std::mutex> g(lock_->mu);
  if (!write_message(fd_, msg))
    throw RuntimeError("lost the connection to the rendezvous store at " + describe() + ": " + std::strerror(errno));
  std::vector<char> reply;
  // The server answers a wait itself when it times out; the slack covers the round trip.
  auto r = read_message(fd_, reply, Clock::now() + reply_within + std::chrono::seconds(5));
  if (r == ReadResult::Closed)
    throw RuntimeError("lost the connection to the rendezvous store at " + describe() + " (rank 0 ended?)");
  if (r == ReadResult::Timeout)
    throw RuntimeError("the rendezvous store at " + describe() + " did not answer within " +
                       std::to_string(reply_within.count() / 1000) + " s");
  if (reply.empty() || reply[0] == 'E') throw RuntimeError("the rendezvous store at " + describe() + " rejected a request");
  return reply;
}

void TcpStore::set(const std::string& key, const std::vector<char>& value) {
  std::vector<char> m{'S'};
  put_field(m, key);
  put_field(m, value.data(), value.size());
  request(m, timeout_);
}

std::vector<char> TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> m{'G'};
  put_field(m, key);
  auto reply = request(m, timeout_);
  if (reply[0] != 'O') throw RuntimeError("rendezvous store at " + describe() + ": key '" + key + "' vanished");
  return std::vector<char>(reply.begin() + 1, reply.end());
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  std::vector<char> m{'A'};
  put_field(m, key);
  put_field(m, std::to_string(delta));
  auto reply = request(m, timeout_);
  return std::stoll(std::string(reply.begin() + 1, reply.end()));
}

void TcpStore::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  std::vector<char> m{'W'};
  put_field(m, std::to_string(timeout.count()));
  put_u32(m, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) put_field(m, k);
  auto reply = request(m, timeout);
  if (reply[0] != 'O') {
    std::string names;
    for (const auto& k : keys) names += (names.empty() ? "" : ", ") + k;
    throw RuntimeError("timed out after " + std::to_string(timeout.count() / 1000.0).substr(0, 5) +
                       " s waiting for rendezvous keys [" + names + "] at " + describe());
  }
}

bool TcpStore::check(const std::vector<std::string>& keys) {
  std::vector<char> m{'C'};
  put_u32(m, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) put_field(m, k);
  return request(m, timeout_)[0] == 'O';
}

// ---------------------------------------------------------------------------------------------------------------
// LocalStore

struct LocalStore::State {
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, std::vector<char>> kv;
};

LocalStore::LocalStore() : state_(std::make_unique<State>()) {}
LocalStore::~LocalStore() = default;

void LocalStore::set(const std::string& key, const std::vector<char>& value) {
  {
    std::lock_guard<std::mutex> g(state_->mu);
    state_->kv[key] = value;
  }
  state_->changed.notify_all();
}

std::vector<char> LocalStore::get(const std::string& key) {
  wait({key});
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->kv[key];
}

int64_t LocalStore::add(const std::string& key, int64_t delta) {
  std::lock_guard<std::mutex> g(state_->mu);
  auto& v = state_->kv[key];
  int64_t now = (v.empty() ? 0 : std::stoll(std::string(v.begin(), v.end()))) + delta;
  std::string s = std::to_string(now);
  v.assign(s.begin(), s.end());
  state_->changed.notify_all();
  return now;
}

void LocalStore::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  std::unique_lock<std::mutex> lk(state_->mu);
  auto all = [&] {
    for (const auto& k : keys)
      if (!state_->kv.count(k)) return false;
    return true;
  };
  if (!state_->changed.wait_for(lk, timeout, all))
    throw RuntimeError("timed out waiting for keys in the local store (world of one)");
}

bool LocalStore::check(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> g(state_->mu);
  for (const auto& k : keys)
    if (!state_->kv.count(k)) return false;
  return true;
}

}  // namespace zt
