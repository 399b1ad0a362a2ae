// mbd-test-cpp: without arguments, run a self test (exit 0 on success);
// with arguments, print the SHA-256 digest of each one.
#include <iostream>
#include <string>

#include "digest.hpp"

int main(int argc, char* argv[])
{
	try {
		if (argc > 1) {
			for (int i = 1; i < argc; ++i) {
				std::cout << mbdtest::sha256_hex(argv[i]) << "  " << argv[i] << std::endl;
			}
			return 0;
		}
		// Known answer: SHA-256 of "abc" (FIPS 180-2, appendix B.1).
		const std::string expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
		const std::string got = mbdtest::sha256_hex("abc");
		if (got != expected) {
			std::cerr << "mbd-test-cpp: self test FAILED: got " << got << std::endl;
			return 1;
		}
		std::cout << "mbd-test-cpp: self test passed" << std::endl;
		return 0;
	} catch (const std::exception& e) {
		std::cerr << "mbd-test-cpp: " << e.what() << std::endl;
		return 2;
	}
}
